//! The statements the shell understands besides SQL, recognized by their leading words:
//! `SHOW TABLES`, `SHOW QUERIES`, `SHOW CREATE TABLE t`, `DESCRIBE t`, `STOP QUERY id`,
//! `EXPLAIN ...`, `HELP`, `QUIT`.

use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

use crate::sql::dialect::SluiceDialect;
use crate::{Result, SluiceError};

/// One statement typed at the prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Command {
    /// `SHOW TABLES`.
    ShowTables,
    /// `SHOW QUERIES`.
    ShowQueries,
    /// `SHOW CREATE TABLE name`.
    ShowCreateTable(String),
    /// `DESCRIBE name` / `DESC name`.
    Describe(String),
    /// `STOP QUERY id-or-name`.
    StopQuery(String),
    /// `EXPLAIN statement`: the statement's text.
    Explain(String),
    /// `HELP` / `\?`.
    Help,
    /// `QUIT` / `EXIT` / `\q`.
    Quit,
    /// Any other statement, for the SQL engine.
    Sql(String),
}

/// The commands, as `HELP` lists them.
pub(crate) const HELP: &str = "\
Statements end with ';' and may span lines. Besides SQL (CREATE TABLE ... WITH (connector = ...),
SET, SELECT, INSERT INTO):
  SELECT ... FROM <stream>        runs a continuous query and shows its result live; Ctrl-C stops it
  SELECT ... FROM <table>         answers at once over bounded and memory-sink tables
  INSERT INTO <sink> SELECT ...   starts a continuous query in the background and prints its id
  SHOW TABLES                     streams, sinks and bounded tables
  DESCRIBE <table>                a table's columns and watermark
  SHOW CREATE TABLE <table>       the DDL that declared a stream or sink
  SHOW QUERIES                    the queries started in this shell: status, batch, rate, watermark
  STOP QUERY <id or name>         stops a query after its current batch
  EXPLAIN SELECT ... | INSERT ... the incremental plan: output mode, watermarks, state and eviction
  HELP                            this text
  QUIT                            stops every query and leaves (Ctrl-D too)";

/// Splits `text` into statements at the semicolons outside quotes and comments; each keeps its
/// text without the `;`, blank ones dropped.
///
/// # Errors
/// [`SluiceError::SqlSyntax`] for text the SQL tokenizer rejects (e.g. an unterminated quote).
pub(crate) fn split_statements(text: &str) -> Result<Vec<String>> {
    let dialect = SluiceDialect::default();
    let tokens = Tokenizer::new(&dialect, text).tokenize_with_location().map_err(|e| SluiceError::SqlSyntax {
        line: e.location.line,
        column: e.location.column,
        message: e.message,
    })?;
    let mut statements = Vec::new();
    let mut current = String::new();
    let mut meaningful = false;
    for token in tokens {
        match token.token {
            Token::SemiColon => {
                if meaningful {
                    statements.push(std::mem::take(&mut current).trim().to_string());
                }
                current.clear();
                meaningful = false;
            }
            // Comments before a statement are dropped, so that its leading words name it.
            Token::Whitespace(_) if !meaningful => {}
            Token::Whitespace(w) => current.push_str(&w.to_string()),
            other => {
                meaningful = true;
                current.push_str(&other.to_string());
            }
        }
    }
    if meaningful {
        statements.push(current.trim().to_string());
    }
    Ok(statements)
}

impl Command {
    /// The command `statement` (one statement, without its `;`) is.
    pub(crate) fn parse(statement: &str) -> Command {
        let words: Vec<&str> = statement.split_whitespace().collect();
        let upper: Vec<String> = words.iter().take(3).map(|w| w.to_ascii_uppercase()).collect();
        let upper: Vec<&str> = upper.iter().map(String::as_str).collect();
        let rest = |n: usize| unquote(&words[n.min(words.len())..].join(" "));
        match upper.as_slice() {
            ["SHOW", "TABLES"] => Command::ShowTables,
            ["SHOW", "QUERIES"] => Command::ShowQueries,
            ["SHOW", "CREATE", "TABLE"] if words.len() > 3 => Command::ShowCreateTable(rest(3)),
            ["DESCRIBE" | "DESC", ..] if words.len() == 2 => Command::Describe(rest(1)),
            ["STOP", "QUERY", ..] if words.len() == 3 => Command::StopQuery(rest(2)),
            ["EXPLAIN", ..] if words.len() > 1 => {
                let start = statement.find(char::is_whitespace).unwrap_or(statement.len());
                Command::Explain(statement[start..].trim().to_string())
            }
            ["HELP"] | ["\\?"] => Command::Help,
            ["QUIT"] | ["EXIT"] | ["\\Q"] => Command::Quit,
            _ => Command::Sql(statement.to_string()),
        }
    }
}

/// A name as typed, without the double or back quotes around it.
fn unquote(name: &str) -> String {
    let trimmed = name.trim();
    for quote in ['"', '`', '\''] {
        if let Some(inner) = trimmed.strip_prefix(quote).and_then(|s| s.strip_suffix(quote)) {
            return inner.to_string();
        }
    }
    trimmed.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_split_at_semicolons_outside_quotes_and_comments() {
        let text = "SELECT 'a;b' AS x; -- a comment; with a semicolon\nSHOW TABLES;;\n  ";
        assert_eq!(split_statements(text).unwrap(), vec!["SELECT 'a;b' AS x", "SHOW TABLES"]);
        assert!(matches!(split_statements("SELECT 'open"), Err(SluiceError::SqlSyntax { line: 1, .. })));
    }

    #[test]
    fn shell_commands_are_recognized_by_their_leading_words() {
        assert_eq!(Command::parse("show   tables"), Command::ShowTables);
        assert_eq!(Command::parse("SHOW QUERIES"), Command::ShowQueries);
        assert_eq!(Command::parse("show create table \"Flights\""), Command::ShowCreateTable("Flights".into()));
        assert_eq!(Command::parse("describe flights"), Command::Describe("flights".into()));
        assert_eq!(Command::parse("STOP QUERY 1b2c"), Command::StopQuery("1b2c".into()));
        assert_eq!(Command::parse("EXPLAIN\nSELECT 1"), Command::Explain("SELECT 1".into()));
        assert_eq!(Command::parse("quit"), Command::Quit);
        assert_eq!(Command::parse("SELECT * FROM t"), Command::Sql("SELECT * FROM t".into()));
        assert_eq!(Command::parse("describe a b"), Command::Sql("describe a b".into()));
    }
}
