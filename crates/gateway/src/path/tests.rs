use super::*;

const NORM: PathRules = PathRules { dot_segments: DotSegments::Normalize, merge_slashes: false };
const MERGE: PathRules = PathRules { dot_segments: DotSegments::Normalize, merge_slashes: true };
const REJECT: PathRules = PathRules { dot_segments: DotSegments::Reject, merge_slashes: false };

fn norm(p: &str, rules: PathRules) -> Result<String, PathError> {
    normalize(p, rules).map(|n| n.map(|n| n.path).unwrap_or_else(|| p.to_owned()))
}

#[test]
fn normal_paths_are_left_alone_without_allocating() {
    for p in ["/", "/a", "/a/b/", "/a.b/c..d/.e", "/api/v1/x?y", "/a//b", "*"] {
        assert_eq!(normalize(p, NORM), Ok(None), "{p}");
    }
}

#[test]
fn dot_segments_resolve() {
    assert_eq!(norm("/public/../admin/x", NORM).unwrap(), "/admin/x");
    assert_eq!(norm("/public/%2e%2e/admin/x", NORM).unwrap(), "/admin/x");
    assert_eq!(norm("/public/%2E%2e/admin/x", NORM).unwrap(), "/admin/x");
    assert_eq!(norm("/public/.%2e/admin", NORM).unwrap(), "/admin");
    assert_eq!(norm("/../../etc/passwd", NORM), Err(PathError::AboveRoot));
    assert_eq!(norm("/a/../../etc/passwd", NORM), Err(PathError::AboveRoot));
    assert_eq!(norm("/a/%2e%2e/..", NORM), Err(PathError::AboveRoot));
    assert_eq!(norm("/a/./b", NORM).unwrap(), "/a/b");
    assert_eq!(norm("/a/b/..", NORM).unwrap(), "/a/");
    assert_eq!(norm("/a/.", NORM).unwrap(), "/a/");
    assert_eq!(norm("/..", NORM), Err(PathError::AboveRoot));
    assert_eq!(norm("/a/..", NORM).unwrap(), "/");
    assert!(normalize("/public/../admin", NORM).unwrap().unwrap().had_dots);
}

#[test]
fn unreserved_escapes_decode_and_others_are_upper_cased() {
    assert_eq!(norm("/%61dmin", NORM).unwrap(), "/admin");
    assert_eq!(norm("/a%2fb", NORM).unwrap(), "/a%2Fb");
    assert_eq!(norm("/a%3cb", NORM).unwrap(), "/a%3Cb");
    assert_eq!(norm("/x%7e", NORM).unwrap(), "/x~");
    assert_eq!(norm("/a%zz", NORM), Err(PathError::BadEscape));
    assert_eq!(norm("/a%2", NORM), Err(PathError::BadEscape));
}

#[test]
fn escaped_slashes_never_become_separators() {
    // `%2F` stays an escape, so `..%2F` is one segment, not a dot segment.
    assert_eq!(norm("/public/..%2Fadmin", NORM).unwrap(), "/public/..%2Fadmin");
}

#[test]
fn slashes_merge_when_asked() {
    assert_eq!(norm("//admin//x", MERGE).unwrap(), "/admin/x");
    assert_eq!(norm("/a//", MERGE).unwrap(), "/a/");
    assert_eq!(norm("//admin//x", NORM).unwrap(), "//admin//x");
}

#[test]
fn reject_mode_and_servlet_parameters() {
    assert_eq!(norm("/public/../admin", REJECT), Err(PathError::DotSegment));
    assert_eq!(norm("/public/%2e/admin", REJECT), Err(PathError::DotSegment));
    assert_eq!(norm("/public/..;x=1/admin", NORM), Err(PathError::DotSegment));
    assert_eq!(norm("/public/..;/admin", NORM), Err(PathError::DotSegment));
    assert_eq!(norm("/a;b/c", NORM).unwrap(), "/a;b/c");
    assert_eq!(norm("relative", NORM), Err(PathError::NotAbsolute));
}
