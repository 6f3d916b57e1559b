//! Request-path normalisation: the gateway routes on exactly the path it forwards.
//!
//! A proxy that matched routes on `/public/../admin/x` and forwarded it unchanged would let
//! the upstream resolve it to `/admin/x` behind the route's back. Before routing, the path is
//! brought to RFC 3986 normal form: percent-encoded unreserved characters are decoded (so
//! `%2e%2e` is `..` and `%61dmin` is `admin`), the remaining escapes get upper-case hex, and
//! dot segments are removed (or the request refused, as configured). Optionally runs of
//! slashes are merged, as nginx's `merge_slashes` and Envoy's option of the same name do.
//! Segments such as `..;x`, which Java servlet containers read as `..`, are always refused:
//! no normal form is safe for every upstream, and so is a `..` that climbs above the root
//! (`/../etc/passwd`), as nginx does, rather than resolved to the root.

/// What to do with `.` and `..` segments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DotSegments {
    /// Resolve them (RFC 3986 §5.2.4) and forward the result.
    Normalize,
    /// Refuse the request with 400.
    Reject,
}

/// The path rules of a listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PathRules {
    pub dot_segments: DotSegments,
    pub merge_slashes: bool,
}

/// Why a path was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathError {
    /// A `%` not followed by two hex digits.
    BadEscape,
    /// A dot segment where they are refused, or one with parameters (`..;x`).
    DotSegment,
    /// Not an absolute path.
    NotAbsolute,
    /// A `..` segment that would climb above the root (nginx refuses these too).
    AboveRoot,
}

impl PathError {
    pub fn message(self) -> &'static str {
        match self {
            PathError::BadEscape => "request path has a `%` not followed by two hex digits",
            PathError::DotSegment => "request path has `.` or `..` segments, which this gateway refuses",
            PathError::NotAbsolute => "request path must start with `/`",
            PathError::AboveRoot => "request path climbs above the root with `..`",
        }
    }
}

/// The normal form of `path`, or `None` when it is already normal (the common case, found
/// with one scan and no allocation). `had_dots` is set when dot segments were resolved.
pub fn normalize(path: &str, rules: PathRules) -> Result<Option<Normalized>, PathError> {
    let b = path.as_bytes();
    if b.is_empty() {
        return Ok(None);
    }
    if b.first() != Some(&b'/') {
        // `*` (OPTIONS) and authority-form (CONNECT) never reach routing as paths.
        return if path == "*" { Ok(None) } else { Err(PathError::NotAbsolute) };
    }
    if !needs_work(b, rules.merge_slashes) {
        return Ok(None);
    }
    let decoded = decode_unreserved(b)?;
    let mut out: Vec<&[u8]> = Vec::new();
    let mut had_dots = false;
    let segments: Vec<&[u8]> = decoded[1..].split(|&c| c == b'/').collect();
    let last = segments.len() - 1;
    let mut trailing_slash = false;
    for (i, seg) in segments.iter().enumerate() {
        let name = seg.split(|&c| c == b';').next().unwrap_or(seg);
        let is_dot = name == b"." || name == b"..";
        if is_dot && name.len() != seg.len() {
            return Err(PathError::DotSegment);
        }
        if is_dot {
            if rules.dot_segments == DotSegments::Reject {
                return Err(PathError::DotSegment);
            }
            had_dots = true;
            if name == b".." && out.pop().is_none() {
                return Err(PathError::AboveRoot);
            }
            // `/a/..` and `/a/.` name the directory: keep the trailing slash.
            trailing_slash = i == last;
            continue;
        }
        if seg.is_empty() && rules.merge_slashes && i != last {
            continue;
        }
        trailing_slash = false;
        out.push(seg);
    }
    let mut s = Vec::with_capacity(decoded.len());
    for seg in &out {
        s.push(b'/');
        s.extend_from_slice(seg);
    }
    if s.is_empty() || trailing_slash {
        s.push(b'/');
    }
    // Only ASCII went in (escapes stay escaped), so this cannot fail.
    let path = String::from_utf8(s).map_err(|_| PathError::BadEscape)?;
    Ok(Some(Normalized { path, had_dots }))
}

/// A path that changed under normalisation.
#[derive(Debug, PartialEq, Eq)]
pub struct Normalized {
    pub path: String,
    pub had_dots: bool,
}

/// Whether anything in `b` could change: an escape, a dot segment, or (when merging) `//`.
fn needs_work(b: &[u8], merge_slashes: bool) -> bool {
    let mut prev = b'/';
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b'%' => return true,
            b'.' if prev == b'/' => {
                let next = b.get(i + 1).copied();
                let dot_dot = next == Some(b'.');
                let after = if dot_dot { b.get(i + 2).copied() } else { next };
                if matches!(after, None | Some(b'/') | Some(b';')) {
                    return true;
                }
            }
            b'/' if merge_slashes && prev == b'/' && i > 0 => return true,
            _ => {}
        }
        prev = c;
        i += 1;
    }
    false
}

/// Decodes `%XX` escapes of unreserved characters; other escapes keep upper-case hex.
fn decode_unreserved(b: &[u8]) -> Result<Vec<u8>, PathError> {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'%' {
            out.push(b[i]);
            i += 1;
            continue;
        }
        let (Some(h), Some(l)) = (b.get(i + 1).and_then(|c| hex(*c)), b.get(i + 2).and_then(|c| hex(*c))) else {
            return Err(PathError::BadEscape);
        };
        let v = h << 4 | l;
        if v.is_ascii_alphanumeric() || matches!(v, b'-' | b'.' | b'_' | b'~') {
            out.push(v);
        } else {
            out.extend_from_slice(&[b'%', b[i + 1].to_ascii_uppercase(), b[i + 2].to_ascii_uppercase()]);
        }
        i += 3;
    }
    Ok(out)
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests;
