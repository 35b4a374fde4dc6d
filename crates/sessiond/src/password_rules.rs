//! Which new passwords are accepted (NIST SP 800-63B §5.1.1.2): a minimum
//! length (12 by default), a maximum of 1024 characters, no composition
//! rules, any Unicode; a password that is guessable (a common or
//! dictionary password, a keyboard walk, a date, a repetition, as zxcvbn
//! estimates them, with the user's name and the site's as extra words) or
//! that contains the user name is refused, with the reason.
//!
//! The one home of these rules: every way a password is set (sign-up by
//! the CLI and the service API, the user's change, an administrator's
//! reset, the import) asks [`PasswordRules::check`]. How passwords are
//! normalised and hashed is `password.rs`'s business.
//!
//! zxcvbn's cost grows quickly with the input's length, so it sees at most
//! [`STRENGTH_PREFIX`] characters: one whose first 32 characters are
//! strong is strong, and one whose first 32 are guessable is refused
//! (conservative: a long unusual tail could have saved it). Measured with
//! `cargo run --release -p sessiond --example password_check_cost`: the
//! slowest check of 1408 inputs built to be slow, up to 1024 characters,
//! took 1.2 ms with 32 characters seen, 3.7 ms with 48 and 5.2 ms with 64.
//! The length rules see the whole password. zxcvbn builds its
//! dictionaries on the first check (about 14 ms): [`PasswordRules::warm_up`]
//! does it when the server starts.

use unicode_normalization::UnicodeNormalization;

/// Characters of a password zxcvbn estimates (see the module docs).
pub const STRENGTH_PREFIX: usize = 32;
/// The shortest minimum an operator may configure (NIST's floor).
pub const LOWEST_MIN_LENGTH: usize = 8;
/// The longest accepted password: argon2's cost does not depend on the
/// length, but an unbounded input is still a cheap way to waste memory.
pub const MAX_LENGTH: usize = 1024;

/// Why a new password is refused; the message says it to the person.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Weakness {
    /// Fewer characters than the minimum.
    #[error("the password must be at least {0} characters long")]
    TooShort(usize),
    /// More than [`MAX_LENGTH`] characters.
    #[error("the password must be at most {MAX_LENGTH} characters long")]
    TooLong,
    /// It contains the user name (in any case).
    #[error("the password must not contain the user name")]
    ContainsName,
    /// zxcvbn's score is under the minimum; its warning, when it has one.
    #[error("the password is too easy to guess{}", .0.as_deref().map(|w| format!(": {w}")).unwrap_or_default())]
    Guessable(Option<String>),
}

/// See the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordRules {
    /// Characters at least.
    pub min_length: usize,
    /// zxcvbn's score (0-4) at least; 0 turns the guessability check off.
    pub min_strength: u8,
    /// Words of this site that make a password guessable here ("sessiond").
    pub site_words: Vec<String>,
}

impl Default for PasswordRules {
    fn default() -> Self {
        Self {
            min_length: 12,
            min_strength: 3,
            site_words: vec!["sessiond".into()],
        }
    }
}

impl PasswordRules {
    /// Rules that accept any password of 1 to [`MAX_LENGTH`] characters:
    /// for importing test and benchmark data an operator chose to let in
    /// (`user import --allow-weak-passwords`).
    pub fn relaxed() -> Self {
        Self {
            min_length: 1,
            min_strength: 0,
            site_words: Vec::new(),
        }
    }

    /// Builds zxcvbn's dictionaries now rather than in the first check
    /// (blocking, about 14 ms: call it from a blocking thread).
    pub fn warm_up() {
        let _ = zxcvbn::zxcvbn("warm-up", &[]);
    }

    /// Whether `user` may have `password`. Lengths count characters of the
    /// normalised (NFKC) password, the form that is hashed.
    pub fn check(&self, password: &str, user: &str) -> Result<(), Weakness> {
        let password: String = password.nfkc().collect();
        let length = password.chars().count();
        if length < self.min_length {
            return Err(Weakness::TooShort(self.min_length));
        }
        if length > MAX_LENGTH {
            return Err(Weakness::TooLong);
        }
        if self.min_strength == 0 {
            return Ok(());
        }
        let lower = password.to_lowercase();
        if !user.is_empty() && lower.contains(&user.to_lowercase()) {
            return Err(Weakness::ContainsName);
        }
        let seen: String = password.chars().take(STRENGTH_PREFIX).collect();
        let mut words: Vec<&str> = self.site_words.iter().map(String::as_str).collect();
        words.push(user);
        let estimate = zxcvbn::zxcvbn(&seen, &words);
        if u8::from(estimate.score()) >= self.min_strength {
            return Ok(());
        }
        let warning = estimate
            .feedback()
            .and_then(|f| f.warning())
            .map(|w| w.to_string());
        Err(Weakness::Guessable(warning))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> PasswordRules {
        PasswordRules::default()
    }

    #[test]
    fn a_long_unusual_passphrase_is_accepted() {
        assert_eq!(
            rules().check("plum-orbit-cactus-velvet-93", "alice"),
            Ok(())
        );
    }

    #[test]
    fn a_password_shorter_than_the_minimum_is_refused_with_the_minimum_named() {
        let e = rules().check("x7#kQ2!p", "alice").unwrap_err();
        assert_eq!(e, Weakness::TooShort(12));
        assert_eq!(
            e.to_string(),
            "the password must be at least 12 characters long"
        );
    }

    #[test]
    fn common_and_dictionary_passwords_are_refused_however_long() {
        for guessable in [
            "password1234",
            "qwertyuiop123",
            "iloveyou2024!",
            "aaaaaaaaaaaaaaaaaaaa",
        ] {
            assert!(
                matches!(
                    rules().check(guessable, "alice"),
                    Err(Weakness::Guessable(_))
                ),
                "{guessable}"
            );
        }
    }

    #[test]
    fn a_password_containing_the_user_name_is_refused_in_any_case() {
        assert_eq!(
            rules().check("xX-Alice-plum-orbit-93", "alice"),
            Err(Weakness::ContainsName)
        );
    }

    #[test]
    fn the_site_name_makes_a_password_guessable() {
        assert!(matches!(
            rules().check("sessiond2026!", "bob"),
            Err(Weakness::Guessable(_))
        ));
    }

    #[test]
    fn lengths_count_characters_after_normalisation() {
        // Twelve full-width letters: 36 bytes, twelve characters, and the
        // same twelve ASCII letters after NFKC.
        let wide: String = "plumorbitcac"
            .chars()
            .map(|c| char::from_u32(u32::from(c) - 0x61 + 0xFF41).unwrap())
            .collect();
        assert_eq!((wide.len(), wide.chars().count()), (36, 12));
        let lengths_only = |min_length| PasswordRules {
            min_length,
            min_strength: 0,
            site_words: Vec::new(),
        };
        assert_eq!(lengths_only(12).check(&wide, "bob"), Ok(()));
        assert_eq!(
            lengths_only(13).check(&wide, "bob"),
            Err(Weakness::TooShort(13))
        );
        assert_eq!(
            rules().check(&"é".repeat(1025), "bob"),
            Err(Weakness::TooLong)
        );
    }

    #[test]
    fn relaxed_rules_let_benchmark_passwords_in() {
        assert_eq!(
            PasswordRules::relaxed().check("pw-user0000", "user0000"),
            Ok(())
        );
        assert!(rules().check("pw-user0000", "user0000").is_err());
    }

    #[test]
    fn only_the_first_characters_are_estimated_so_a_huge_input_stays_cheap() {
        // 1000 characters of a guessable pattern: refused, on its prefix.
        let long = "abc123".repeat(166);
        assert!(matches!(
            rules().check(&long, "bob"),
            Err(Weakness::Guessable(_))
        ));
    }
}
