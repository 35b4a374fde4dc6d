//! Request paths as access rules see them.
//!
//! A rule must judge the path the application will serve, not the bytes the
//! client sent: `/public/../admin`, `/%61dmin`, `//admin` and `/admin;x=1`
//! are `/admin` to nginx, to most frameworks and to Java servers. So the
//! path is percent-decoded, dot-segments are resolved, empty segments
//! dropped and `;parameters` cut from each segment before matching. What
//! has no single reading is refused rather than guessed: an encoded `/` or
//! `\`, a backslash, control characters, invalid UTF-8, or `..` above the
//! root.

use percent_encoding::percent_decode_str;

/// Why a path cannot be judged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PathError {
    /// Not an absolute path.
    #[error("the path does not start with '/'")]
    NotAbsolute,
    /// `%2F` or `%5C`: a separator that some servers decode and some do not.
    #[error("the path holds an encoded '/' or '\\'")]
    EncodedSeparator,
    /// A backslash, a control character or invalid UTF-8 after decoding.
    #[error("the path holds a character with no single meaning")]
    Ambiguous,
    /// `..` above the root.
    #[error("the path climbs above the root")]
    AboveRoot,
}

/// A normalised path: its segments, none empty, `.` or `..`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalPath {
    segments: Vec<String>,
}

impl NormalPath {
    /// Normalises the path of `path_and_query` (a query is ignored).
    pub fn parse(path_and_query: &str) -> Result<Self, PathError> {
        let path = path_and_query.split(['?', '#']).next().unwrap_or_default();
        if !path.starts_with('/') {
            return Err(PathError::NotAbsolute);
        }
        let lower = path.to_ascii_lowercase();
        if lower.contains("%2f") || lower.contains("%5c") {
            return Err(PathError::EncodedSeparator);
        }
        let decoded = percent_decode_str(path)
            .decode_utf8()
            .map_err(|_| PathError::Ambiguous)?;
        if decoded.chars().any(|c| c == '\\' || c.is_control()) {
            return Err(PathError::Ambiguous);
        }
        let mut segments: Vec<String> = Vec::new();
        for raw in decoded.split('/') {
            // `/admin;jsessionid=x` is `/admin` to a servlet container.
            let segment = raw.split(';').next().unwrap_or_default();
            match segment {
                "" | "." => {}
                ".." => {
                    segments.pop().ok_or(PathError::AboveRoot)?;
                }
                s => segments.push(s.to_owned()),
            }
        }
        Ok(Self { segments })
    }

    /// The segments.
    pub fn segments(&self) -> &[String] {
        &self.segments
    }
}

impl std::fmt::Display for NormalPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.segments.is_empty() {
            return f.write_str("/");
        }
        for s in &self.segments {
            write!(f, "/{s}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_of_a_path_normalises_to_what_the_application_serves() {
        for (raw, normal) in [
            ("/", "/"),
            ("/api/admin", "/api/admin"),
            ("/api/public/../admin", "/api/admin"),
            ("/api/./admin/", "/api/admin"),
            ("//api///admin", "/api/admin"),
            ("/api/%61dmin", "/api/admin"),
            ("/api/admin;jsessionid=1/x", "/api/admin/x"),
            ("/api/admin?x=/../public", "/api/admin"),
            ("/caf%C3%A9", "/café"),
        ] {
            assert_eq!(NormalPath::parse(raw).unwrap().to_string(), normal, "{raw}");
        }
    }

    #[test]
    fn a_path_with_no_single_reading_is_refused() {
        for (raw, error) in [
            ("api/admin", PathError::NotAbsolute),
            ("/api%2Fadmin", PathError::EncodedSeparator),
            ("/api%5cadmin", PathError::EncodedSeparator),
            ("/api\\admin", PathError::Ambiguous),
            ("/api/%00admin", PathError::Ambiguous),
            ("/api/%ff", PathError::Ambiguous),
            ("/..", PathError::AboveRoot),
            ("/a/../../admin", PathError::AboveRoot),
        ] {
            assert_eq!(NormalPath::parse(raw), Err(error), "{raw}");
        }
    }
}
