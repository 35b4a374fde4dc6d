//! A short, human-readable device label from a `User-Agent` header, for the
//! "your devices" view ("Chrome 156 on Linux"). Storing the label instead of
//! the raw header keeps sessions small (the Redis store keeps a session hash
//! under 64-byte values) and stores less of a fingerprint.
//!
//! A heuristic, not a full parser: it knows the common browsers and systems
//! and falls back to the product token (`curl 8`).

const BROWSERS: &[(&str, &str)] = &[
    ("Edg/", "Edge"),
    ("EdgA/", "Edge"),
    ("OPR/", "Opera"),
    ("SamsungBrowser/", "Samsung Internet"),
    ("Firefox/", "Firefox"),
    ("FxiOS/", "Firefox"),
    ("CriOS/", "Chrome"),
    ("Chrome/", "Chrome"),
    ("Version/", "Safari"),
];

const SYSTEMS: &[(&str, &str)] = &[
    ("Android", "Android"),
    ("iPhone", "iOS"),
    ("iPad", "iPadOS"),
    ("CrOS", "ChromeOS"),
    ("Windows", "Windows"),
    ("Mac OS X", "macOS"),
    ("Macintosh", "macOS"),
    ("Linux", "Linux"),
];

/// Longest label kept.
const MAX_LABEL: usize = 40;

fn major_after(ua: &str, marker: &str) -> Option<String> {
    let rest = &ua[ua.find(marker)? + marker.len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    (!digits.is_empty()).then_some(digits)
}

/// The label for a `User-Agent` value.
pub fn device_label(ua: &str) -> String {
    let browser = BROWSERS
        .iter()
        .find(|(marker, _)| ua.contains(marker))
        .map(|(marker, name)| {
            let version = major_after(ua, marker)
                .map(|v| format!(" {v}"))
                .unwrap_or_default();
            format!("{name}{version}")
        });
    let system = SYSTEMS
        .iter()
        .find(|(marker, _)| ua.contains(marker))
        .map(|(_, name)| *name);
    let label = match (browser, system) {
        (Some(b), Some(s)) => format!("{b} on {s}"),
        (Some(b), None) => b,
        (None, _) => {
            // A tool: its product token, "curl/8.5.0" → "curl 8".
            let token = ua.split_whitespace().next().unwrap_or("");
            match token.split_once('/') {
                Some((name, version)) => {
                    let major: String = version.chars().take_while(char::is_ascii_digit).collect();
                    if major.is_empty() {
                        name.to_owned()
                    } else {
                        format!("{name} {major}")
                    }
                }
                None => token.to_owned(),
            }
        }
    };
    let label: String = label
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_LABEL)
        .collect();
    if label.is_empty() {
        "unknown device".to_owned()
    } else {
        label
    }
}

#[cfg(test)]
mod tests {
    use super::device_label;

    #[test]
    fn common_user_agents_get_short_labels() {
        let cases = [
            (
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36",
                "Chrome 156 on Linux",
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36 Edg/156.0.0.0",
                "Edge 156 on Windows",
            ),
            (
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
                "Safari 18 on macOS",
            ),
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
                "Safari 18 on iOS",
            ),
            (
                "Mozilla/5.0 (Android 15; Mobile; rv:133.0) Gecko/133.0 Firefox/133.0",
                "Firefox 133 on Android",
            ),
            ("curl/8.5.0", "curl 8"),
            ("Python-urllib/3.11", "Python-urllib 3"),
            ("", "unknown device"),
        ];
        for (ua, want) in cases {
            assert_eq!(device_label(ua), want, "{ua}");
        }
        assert!(device_label(&"x".repeat(5000)).len() <= 40);
    }
}
