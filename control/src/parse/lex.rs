//! Splitting lines into words, as iptables-restore and as a shell would.

use crate::error::{RuleError, RuleErrorKind};

/// A word of a rule line and where it starts (1-based line and column).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    pub text: String,
    pub line: u32,
    pub col: u32,
}

impl Token {
    pub fn is(&self, s: &str) -> bool {
        self.text == s
    }
}

/// Splits a line the way iptables-restore does: white space separates words,
/// double quotes group (a backslash inside them escapes the next character);
/// single quotes and backslashes outside quotes are ordinary characters.
pub fn restore_words(line: &str, line_no: u32) -> Result<Vec<Token>, RuleError> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut start: Option<u32> = None;
    let mut quote_at: Option<u32> = None;
    let mut escaped = false;
    for (i, c) in line.chars().enumerate() {
        let col = i as u32 + 1;
        if quote_at.is_some() {
            if escaped {
                cur.push(c);
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                quote_at = None;
                out.push(Token {
                    text: std::mem::take(&mut cur),
                    line: line_no,
                    col: start.take().unwrap_or(col),
                });
            } else {
                cur.push(c);
            }
            continue;
        }
        match c {
            '"' => {
                quote_at = Some(col);
                start.get_or_insert(col);
            }
            ' ' | '\t' | '\r' | '\n' => {
                if let Some(s) = start.take() {
                    out.push(Token {
                        text: std::mem::take(&mut cur),
                        line: line_no,
                        col: s,
                    });
                }
            }
            _ => {
                start.get_or_insert(col);
                cur.push(c);
            }
        }
    }
    if let Some(q) = quote_at {
        return Err(RuleError::at(
            line_no,
            q,
            RuleErrorKind::Syntax("unterminated double quote".into()),
        ));
    }
    if let Some(s) = start {
        out.push(Token {
            text: cur,
            line: line_no,
            col: s,
        });
    }
    Ok(out)
}

/// The result of splitting a shell line: its words, and whether it ended
/// with a backslash (continued on the next line).
pub struct ShellLine {
    pub words: Vec<Token>,
    pub continued: bool,
}

/// Splits a line of a shell script of iptables commands: white space
/// separates words; single quotes take everything literally; double quotes
/// honour `\"`, `\\`, `\$` and `` \` ``; a backslash outside quotes escapes the
/// next character; `#` at the start of a word begins a comment. Variables,
/// substitutions and operators are refused: the script is read, not run.
pub fn shell_words(line: &str, line_no: u32) -> Result<ShellLine, RuleError> {
    let chars: Vec<char> = line.chars().collect();
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut start: Option<u32> = None;
    let mut i = 0;
    let err = |col: usize, msg: &str| {
        RuleError::at(
            line_no,
            col as u32 + 1,
            RuleErrorKind::Syntax(msg.to_string()),
        )
    };
    while i < chars.len() {
        let c = chars[i];
        let col = i as u32 + 1;
        match c {
            ' ' | '\t' | '\r' => {
                if let Some(s) = start.take() {
                    out.push(Token {
                        text: std::mem::take(&mut cur),
                        line: line_no,
                        col: s,
                    });
                }
            }
            '#' if start.is_none() => break,
            '\'' => {
                start.get_or_insert(col);
                let close = chars[i + 1..]
                    .iter()
                    .position(|&c| c == '\'')
                    .ok_or_else(|| err(i, "unterminated single quote"))?;
                cur.extend(&chars[i + 1..i + 1 + close]);
                i += close + 1;
            }
            '"' => {
                start.get_or_insert(col);
                let open = i;
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err(err(open, "unterminated double quote")),
                        Some('"') => break,
                        Some('\\') if matches!(chars.get(i + 1), Some('"' | '\\' | '$' | '`')) => {
                            cur.push(chars[i + 1]);
                            i += 1;
                        }
                        Some('$' | '`') => {
                            return Err(err(
                                i,
                                "shell expansions are not supported: write the value out",
                            ))
                        }
                        Some(&c) => cur.push(c),
                    }
                    i += 1;
                }
            }
            '\\' => {
                if i + 1 == chars.len() {
                    if let Some(s) = start.take() {
                        out.push(Token {
                            text: std::mem::take(&mut cur),
                            line: line_no,
                            col: s,
                        });
                    }
                    return Ok(ShellLine {
                        words: out,
                        continued: true,
                    });
                }
                start.get_or_insert(col);
                cur.push(chars[i + 1]);
                i += 1;
            }
            '$' | '`' => {
                return Err(err(
                    i,
                    "shell expansions are not supported: write the value out",
                ))
            }
            ';' | '|' | '&' | '>' | '<' | '(' | ')' => {
                return Err(err(
                    i,
                    "shell operators are not supported: one iptables command per line",
                ))
            }
            _ => {
                start.get_or_insert(col);
                cur.push(c);
            }
        }
        i += 1;
    }
    if let Some(s) = start {
        out.push(Token {
            text: cur,
            line: line_no,
            col: s,
        });
    }
    Ok(ShellLine {
        words: out,
        continued: false,
    })
}

/// Splits `--option=value` into two words, as getopt reads it.
pub fn split_long_options(toks: Vec<Token>) -> Vec<Token> {
    if !toks.iter().any(|t| is_long_with_value(&t.text)) {
        return toks;
    }
    let mut out = Vec::with_capacity(toks.len() + 1);
    for t in toks {
        match t.text.split_once('=') {
            Some((opt, value)) if is_long_with_value(&t.text) => {
                let col = t.col + opt.chars().count() as u32 + 1;
                out.push(Token {
                    text: opt.to_string(),
                    line: t.line,
                    col: t.col,
                });
                out.push(Token {
                    text: value.to_string(),
                    line: t.line,
                    col,
                });
            }
            _ => out.push(t),
        }
    }
    out
}

fn is_long_with_value(s: &str) -> bool {
    s.strip_prefix("--")
        .and_then(|r| r.split_once('='))
        .is_some_and(|(name, _)| {
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(t: &[Token]) -> Vec<&str> {
        t.iter().map(|t| t.text.as_str()).collect()
    }

    #[test]
    fn restore_quoting() {
        let t = restore_words(
            r#"-A INPUT -m comment --comment "allow \"ssh\" now" -j ACCEPT"#,
            3,
        )
        .expect("lex");
        assert_eq!(
            texts(&t),
            [
                "-A",
                "INPUT",
                "-m",
                "comment",
                "--comment",
                "allow \"ssh\" now",
                "-j",
                "ACCEPT"
            ]
        );
        assert_eq!((t[5].line, t[5].col), (3, 31));
        let t = restore_words("-m comment --comment 'a' \"\"", 1).expect("lex");
        assert_eq!(texts(&t), ["-m", "comment", "--comment", "'a'", ""]);
        let e = restore_words("-A X \"open", 7).expect_err("unterminated");
        assert_eq!((e.line, e.column), (7, 6));
    }

    #[test]
    fn long_options_with_equals() {
        let t =
            split_long_options(restore_words("--table=nat -A X --comment=a=b", 1).expect("lex"));
        assert_eq!(texts(&t), ["--table", "nat", "-A", "X", "--comment", "a=b"]);
        assert_eq!(t[1].col, 9);
    }

    #[test]
    fn shell_quoting() {
        let l = shell_words(
            r#"iptables -A INPUT -m comment --comment 'it''s "x"' -j LOG --log-prefix "a \"b\" " # tail"#,
            1,
        )
        .expect("lex");
        assert_eq!(
            texts(&l.words),
            [
                "iptables",
                "-A",
                "INPUT",
                "-m",
                "comment",
                "--comment",
                "its \"x\"",
                "-j",
                "LOG",
                "--log-prefix",
                "a \"b\" "
            ]
        );
        assert!(!l.continued);
        let l = shell_words("iptables -A INPUT \\", 1).expect("lex");
        assert!(l.continued);
        assert_eq!(texts(&l.words), ["iptables", "-A", "INPUT"]);
        assert!(shell_words("iptables -A $CHAIN", 1).is_err());
        assert!(shell_words("iptables -L; reboot", 1).is_err());
        assert!(shell_words("iptables 'x", 1).is_err());
    }
}
