//! Unit tests of the request path's helpers.

use super::headers::split_host;

#[test]
fn host_headers_are_checked() {
    assert_eq!(split_host("api.example.com"), Some("api.example.com"));
    assert_eq!(split_host("api.example.com:8080"), Some("api.example.com"));
    assert_eq!(split_host("[::1]:8080"), Some("[::1]"));
    assert_eq!(split_host("[::1]"), Some("[::1]"));
    assert_eq!(split_host("127.0.0.1"), Some("127.0.0.1"));
    for bad in ["", "a b", "host:port", "a/b", "user@host", "[::1", "[zz]", "h:123456"] {
        assert_eq!(split_host(bad), None, "{bad}");
    }
}
