mod files;
mod templates;
