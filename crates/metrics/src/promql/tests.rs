//! Unit tests of the evaluator against handmade data in [`MemStorage`].

use super::*;
use crate::storage::MemStorage;
