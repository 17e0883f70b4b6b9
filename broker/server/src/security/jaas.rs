//! Kafka's `sasl.jaas.config` value: one JAAS login module entry, e.g.
//!
//! ```text
//! org.apache.kafka.common.security.plain.PlainLoginModule required
//!     username="admin" password="admin-secret"
//!     user_admin="admin-secret" user_alice="alice-secret";
//! ```
//!
//! Grammar, as Kafka reads it: a login module class, a flag (`required`,
//! `requisite`, `sufficient` or `optional`, any case), `key=value` options
//! and a terminating `;`. A value is a bare word or a double-quoted string
//! in which `\"` and `\\` are the only escapes. Whitespace and newlines may
//! go anywhere between tokens; `//` and `/* */` comments are skipped.
//! Exactly one entry is allowed, since Kafka takes one module per listener
//! and mechanism. Stricter than Kafka: an option given twice is an error
//! (Kafka keeps the last), and so is an unknown escape (Kafka drops the
//! backslash).
//!
//! Errors name the line and column, never an option's value: values are
//! often passwords and errors end up in logs.

use std::{collections::BTreeMap, fmt};

/// One parsed `sasl.jaas.config` entry.
#[derive(Clone, PartialEq, Eq)]
pub struct JaasConfig {
    /// The login module class, e.g.
    /// `org.apache.kafka.common.security.plain.PlainLoginModule`.
    pub login_module: String,
    /// The control flag, lower-cased: `required`, `requisite`, `sufficient`
    /// or `optional`.
    pub flag: String,
    /// The `key=value` options, unquoted and unescaped.
    pub options: BTreeMap<String, String>,
}

impl JaasConfig {
    /// The PLAIN users: each `user_NAME="password"` option as NAME to
    /// password.
    pub fn plain_users(&self) -> BTreeMap<String, String> {
        self.options
            .iter()
            .filter_map(|(key, value)| {
                let name = key.strip_prefix("user_").filter(|name| !name.is_empty())?;
                Some((name.to_string(), value.clone()))
            })
            .collect()
    }
}

/// Shows option names only: the values are passwords.
impl fmt::Debug for JaasConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JaasConfig")
            .field("login_module", &self.login_module)
            .field("flag", &self.flag)
            .field("options", &self.options.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Where in the `sasl.jaas.config` text something is, both 1-based.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Position {
    /// Line number, starting at 1.
    pub line: usize,
    /// Column in characters, starting at 1.
    pub column: usize,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

/// Why a `sasl.jaas.config` value was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JaasError {
    /// Nothing but whitespace and comments.
    #[error("sasl.jaas.config is empty: expected `<login module class> <flag> <options>;`")]
    Empty,
    /// The text stops before the entry is complete (e.g. no `;`).
    #[error("sasl.jaas.config ends at {at} where {expected} was expected")]
    UnexpectedEnd {
        /// What should have come next.
        expected: &'static str,
        /// The end of the text.
        at: Position,
    },
    /// A token that does not fit the grammar there.
    #[error("sasl.jaas.config at {at}: expected {expected}, found {found}")]
    Unexpected {
        /// What should have come.
        expected: &'static str,
        /// What kind of token came (never its text: it may be a password).
        found: &'static str,
        /// Where it starts.
        at: Position,
    },
    /// A double-quoted value without its closing quote.
    #[error("sasl.jaas.config at {at}: quoted value is not closed")]
    UnterminatedQuote {
        /// Where the opening quote is.
        at: Position,
    },
    /// A `/*` comment without its `*/`.
    #[error("sasl.jaas.config at {at}: comment is not closed with */")]
    UnterminatedComment {
        /// Where the comment starts.
        at: Position,
    },
    /// A backslash escape other than `\"` and `\\` in a quoted value.
    #[error(
        r#"sasl.jaas.config at {at}: unknown escape `\{escape}` (only \" and \\ are allowed)"#
    )]
    BadEscape {
        /// The character after the backslash.
        escape: char,
        /// Where the backslash is.
        at: Position,
    },
    /// The word after the class is not a JAAS control flag.
    #[error(
        "sasl.jaas.config at {at}: `{flag}` is not a login module flag \
         (required, requisite, sufficient or optional)"
    )]
    InvalidFlag {
        /// The word found.
        flag: String,
        /// Where it is.
        at: Position,
    },
    /// The same option key twice.
    #[error("sasl.jaas.config at {at}: option `{key}` is given twice")]
    DuplicateOption {
        /// The repeated key.
        key: String,
        /// Where the second one is.
        at: Position,
    },
    /// Text after the first entry's `;`.
    #[error(
        "sasl.jaas.config at {at}: a second login module; Kafka takes exactly one per \
         listener and mechanism"
    )]
    MultipleModules {
        /// Where the second entry starts.
        at: Position,
    },
}

const FLAGS: [&str; 4] = ["required", "requisite", "sufficient", "optional"];

// What the parser expects next, for error messages.
const FLAG: &str = "a login module flag";
const OPTION: &str = "an option or `;`";
const EQUALS: &str = "`=` after the option name";
const VALUE: &str = "the option's value";

/// Parses a `sasl.jaas.config` value.
pub fn parse(text: &str) -> Result<JaasConfig, JaasError> {
    let (tokens, end) = tokenize(text)?;
    let mut tokens = tokens.into_iter();
    let next = |tokens: &mut std::vec::IntoIter<Token>, expected: &'static str| {
        tokens
            .next()
            .ok_or(JaasError::UnexpectedEnd { expected, at: end })
    };

    let login_module = match tokens.next() {
        None => return Err(JaasError::Empty),
        Some(token) => token.word("the login module class")?.0,
    };
    let (flag, at) = next(&mut tokens, FLAG)?.word(FLAG)?;
    let lower = flag.to_ascii_lowercase();
    if !FLAGS.contains(&lower.as_str()) {
        return Err(JaasError::InvalidFlag { flag, at });
    }
    let mut options = BTreeMap::new();
    loop {
        let token = next(&mut tokens, OPTION)?;
        if matches!(token.kind, Kind::Semicolon) {
            break;
        }
        let (key, at) = token.word(OPTION)?;
        let equals = next(&mut tokens, EQUALS)?;
        if !matches!(equals.kind, Kind::Equals) {
            return Err(equals.unexpected(EQUALS));
        }
        let value = next(&mut tokens, VALUE)?;
        let value = match value.kind {
            Kind::Word(value) | Kind::Quoted(value) => value,
            _ => return Err(value.unexpected(VALUE)),
        };
        if options.contains_key(&key) {
            return Err(JaasError::DuplicateOption { key, at });
        }
        options.insert(key, value);
    }
    let flag = lower;
    match tokens.next() {
        None => Ok(JaasConfig {
            login_module,
            flag,
            options,
        }),
        Some(Token {
            kind: Kind::Word(_),
            at,
        }) => Err(JaasError::MultipleModules { at }),
        Some(other) => Err(other.unexpected("the end after `;`")),
    }
}

struct Token {
    kind: Kind,
    at: Position,
}

enum Kind {
    Word(String),
    Quoted(String),
    Equals,
    Semicolon,
}

impl Token {
    /// The word this token is, or an error saying `expected` was.
    fn word(self, expected: &'static str) -> Result<(String, Position), JaasError> {
        match self.kind {
            Kind::Word(word) => Ok((word, self.at)),
            _ => Err(self.unexpected(expected)),
        }
    }

    fn unexpected(self, expected: &'static str) -> JaasError {
        let found = match self.kind {
            Kind::Word(_) => "a word",
            Kind::Quoted(_) => "a quoted value",
            Kind::Equals => "`=`",
            Kind::Semicolon => "`;`",
        };
        JaasError::Unexpected {
            expected,
            found,
            at: self.at,
        }
    }
}

/// Characters with their positions, for the tokenizer.
struct Cursor<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
    at: Position,
}

impl Cursor<'_> {
    fn peek(&mut self) -> Option<char> {
        self.chars.peek().copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.chars.next()?;
        if c == '\n' {
            self.at = Position {
                line: self.at.line + 1,
                column: 1,
            };
        } else {
            self.at.column += 1;
        }
        Some(c)
    }

    /// Whether the text continues with `second` after the next character.
    fn second_is(&self, second: char) -> bool {
        let mut ahead = self.chars.clone();
        ahead.next();
        ahead.next() == Some(second)
    }
}

/// Splits the text into tokens; also returns the position of its end.
fn tokenize(text: &str) -> Result<(Vec<Token>, Position), JaasError> {
    let mut cursor = Cursor {
        chars: text.chars().peekable(),
        at: Position { line: 1, column: 1 },
    };
    let mut tokens = Vec::new();
    while let Some(c) = cursor.peek() {
        let at = cursor.at;
        let kind = match c {
            _ if c.is_whitespace() => {
                cursor.bump();
                continue;
            }
            '/' if cursor.second_is('/') => {
                while cursor.bump().is_some_and(|c| c != '\n') {}
                continue;
            }
            '/' if cursor.second_is('*') => {
                skip_block_comment(&mut cursor, at)?;
                continue;
            }
            '=' | ';' => {
                cursor.bump();
                if c == '=' {
                    Kind::Equals
                } else {
                    Kind::Semicolon
                }
            }
            '"' => Kind::Quoted(quoted(&mut cursor, at)?),
            _ => {
                let mut word = String::new();
                while let Some(c) = cursor.peek() {
                    if c.is_whitespace() || matches!(c, '=' | ';' | '"') {
                        break;
                    }
                    word.push(c);
                    cursor.bump();
                }
                Kind::Word(word)
            }
        };
        tokens.push(Token { kind, at });
    }
    Ok((tokens, cursor.at))
}

fn skip_block_comment(cursor: &mut Cursor<'_>, at: Position) -> Result<(), JaasError> {
    cursor.bump();
    cursor.bump();
    loop {
        match cursor.bump() {
            None => return Err(JaasError::UnterminatedComment { at }),
            Some('*') if cursor.peek() == Some('/') => {
                cursor.bump();
                return Ok(());
            }
            Some(_) => {}
        }
    }
}

/// A double-quoted value, the cursor on its opening quote.
fn quoted(cursor: &mut Cursor<'_>, at: Position) -> Result<String, JaasError> {
    cursor.bump();
    let mut value = String::new();
    loop {
        let escape_at = cursor.at;
        match cursor.bump() {
            None => return Err(JaasError::UnterminatedQuote { at }),
            Some('"') => return Ok(value),
            Some('\\') => match cursor.bump() {
                Some(c @ ('"' | '\\')) => value.push(c),
                Some(escape) => {
                    return Err(JaasError::BadEscape {
                        escape,
                        at: escape_at,
                    })
                }
                None => return Err(JaasError::UnterminatedQuote { at }),
            },
            Some(c) => value.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAIN: &str = "org.apache.kafka.common.security.plain.PlainLoginModule";

    fn at(line: usize, column: usize) -> Position {
        Position { line, column }
    }

    #[test]
    fn parses_kafkas_plain_example() {
        let text = format!(
            r#"{PLAIN} required username="admin" password="admin-secret" {}"#,
            r#"user_admin="admin-secret" user_alice="alice-secret";"#
        );
        let config = parse(&text).unwrap();
        assert_eq!(config.login_module, PLAIN);
        assert_eq!(config.flag, "required");
        assert_eq!(config.options.len(), 4);
        assert_eq!(config.options["username"], "admin");
        assert_eq!(config.options["password"], "admin-secret");
        let users = config.plain_users();
        assert_eq!(users.len(), 2);
        assert_eq!(users["admin"], "admin-secret");
        assert_eq!(users["alice"], "alice-secret");
    }

    #[test]
    fn whitespace_newlines_comments_and_bare_values() {
        let text = "\n  org.apache.kafka.common.security.scram.ScramLoginModule\n\tREQUIRED\n   \
                    // a comment\n  username = admin /* inline */ password=\"p w\"\n  ;  \n";
        let config = parse(text).unwrap();
        assert_eq!(config.flag, "required");
        assert_eq!(config.options["username"], "admin");
        assert_eq!(config.options["password"], "p w");
        assert!(config.plain_users().is_empty());
    }

    #[test]
    fn quoted_values_unescape_and_may_hold_separators() {
        let text = format!(r#"{PLAIN} optional user_bob="a\"b\\c;d=e f" user_="ignored";"#);
        let config = parse(&text).unwrap();
        assert_eq!(config.options["user_bob"], r#"a"b\c;d=e f"#);
        assert_eq!(
            config.plain_users().into_iter().collect::<Vec<_>>(),
            [("bob".to_string(), r#"a"b\c;d=e f"#.to_string())]
        );
    }

    #[test]
    fn every_flag_is_accepted() {
        for flag in ["required", "Requisite", "SUFFICIENT", "optional"] {
            let config = parse(&format!("{PLAIN} {flag};")).unwrap();
            assert_eq!(config.flag, flag.to_ascii_lowercase());
            assert!(config.options.is_empty());
        }
    }

    #[test]
    fn empty_text_is_refused() {
        assert_eq!(parse(""), Err(JaasError::Empty));
        assert_eq!(parse("  // nothing\n"), Err(JaasError::Empty));
    }

    #[test]
    fn missing_pieces_are_refused_with_their_position() {
        let error = parse(&format!("{PLAIN} required username=\"admin\"")).unwrap_err();
        assert_eq!(
            error,
            JaasError::UnexpectedEnd {
                expected: "an option or `;`",
                at: at(1, 82)
            }
        );
        assert!(error.to_string().contains("line 1, column 82"), "{error}");

        let error = parse(PLAIN).unwrap_err();
        assert!(matches!(
            error,
            JaasError::UnexpectedEnd {
                expected: "a login module flag",
                ..
            }
        ));

        let error = parse(&format!("{PLAIN} required\n username;")).unwrap_err();
        assert_eq!(
            error,
            JaasError::Unexpected {
                expected: "`=` after the option name",
                found: "`;`",
                at: at(2, 10)
            }
        );

        let error = parse(&format!("{PLAIN} required username=;")).unwrap_err();
        assert!(matches!(
            error,
            JaasError::Unexpected {
                expected: "the option's value",
                ..
            }
        ));

        let error = parse("= required;").unwrap_err();
        assert!(
            matches!(error, JaasError::Unexpected { found: "`=`", .. }),
            "{error}"
        );
    }

    #[test]
    fn errors_do_not_show_values() {
        let error = parse(&format!("{PLAIN} required password s3cret;")).unwrap_err();
        assert!(matches!(
            error,
            JaasError::Unexpected {
                found: "a word",
                ..
            }
        ));
        assert!(!error.to_string().contains("s3cret"), "{error}");
        let config = parse(&format!("{PLAIN} required password=\"s3cret\";")).unwrap();
        assert!(!format!("{config:?}").contains("s3cret"));
    }

    #[test]
    fn bad_flag_is_refused() {
        let error = parse(&format!("{PLAIN} mandatory;")).unwrap_err();
        assert_eq!(
            error,
            JaasError::InvalidFlag {
                flag: "mandatory".into(),
                at: at(1, 57)
            }
        );
        assert!(error
            .to_string()
            .contains("`mandatory` is not a login module flag"));
    }

    #[test]
    fn quoting_errors_are_refused() {
        let error = parse(&format!("{PLAIN} required a=\"open;")).unwrap_err();
        assert_eq!(error, JaasError::UnterminatedQuote { at: at(1, 68) });
        let error = parse(&format!("{PLAIN} required a=\"x\\ny\";")).unwrap_err();
        assert_eq!(
            error,
            JaasError::BadEscape {
                escape: 'n',
                at: at(1, 70)
            }
        );
        let error = parse(&format!("{PLAIN} required /* open;")).unwrap_err();
        assert!(
            matches!(error, JaasError::UnterminatedComment { .. }),
            "{error}"
        );
    }

    #[test]
    fn duplicate_option_is_refused() {
        let error = parse(&format!("{PLAIN} required user_a=x user_a=y;")).unwrap_err();
        assert_eq!(
            error,
            JaasError::DuplicateOption {
                key: "user_a".into(),
                at: at(1, 75)
            }
        );
    }

    #[test]
    fn second_login_module_is_refused() {
        let text = format!("{PLAIN} required a=b;\n{PLAIN} optional;");
        let error = parse(&text).unwrap_err();
        assert_eq!(error, JaasError::MultipleModules { at: at(2, 1) });
        assert!(error.to_string().contains("exactly one"), "{error}");
        let error = parse(&format!("{PLAIN} required;;")).unwrap_err();
        assert!(
            matches!(error, JaasError::Unexpected { found: "`;`", .. }),
            "{error}"
        );
    }
}
