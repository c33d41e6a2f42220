//! The shell's line editor: rustyline with history, statements over several lines up to their
//! `;`, and tab completion of SQL keywords and of the context's table and column names.

use std::sync::{Arc, RwLock};

use datafusion::sql::sqlparser::keywords::ALL_KEYWORDS;
use rustyline::completion::{Completer, Pair};
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::{ValidationContext, ValidationResult, Validator};
use rustyline::{Context, Helper};

/// The names completion offers besides keywords: tables and their columns, refreshed after each
/// statement.
pub(crate) type Names = Arc<RwLock<Vec<String>>>;

/// rustyline's helper for the shell.
pub(crate) struct ShellHelper {
    names: Names,
}

impl ShellHelper {
    pub(crate) fn new(names: Names) -> Self {
        Self { names }
    }
}

impl Completer for ShellHelper {
    type Candidate = Pair;

    fn complete(&self, line: &str, pos: usize, _ctx: &Context<'_>) -> rustyline::Result<(usize, Vec<Pair>)> {
        let before = &line[..pos];
        // Just after the last character that cannot be part of a name (which may be several bytes).
        let start = before
            .char_indices()
            .rfind(|(_, c)| !(c.is_alphanumeric() || *c == '_'))
            .map_or(0, |(i, c)| i + c.len_utf8());
        let prefix = &before[start..];
        if prefix.is_empty() {
            return Ok((pos, vec![]));
        }
        let names = self.names.read().unwrap_or_else(|e| e.into_inner());
        let lower = prefix.to_ascii_lowercase();
        let upper_case = prefix.chars().next().is_some_and(char::is_uppercase);
        let mut candidates: Vec<Pair> = names
            .iter()
            .filter(|n| n.to_ascii_lowercase().starts_with(&lower))
            .map(|n| Pair { display: n.clone(), replacement: n.clone() })
            .collect();
        candidates.extend(ALL_KEYWORDS.iter().filter(|k| k.to_ascii_lowercase().starts_with(&lower)).map(|k| {
            let word = if upper_case { k.to_string() } else { k.to_ascii_lowercase() };
            Pair { display: word.clone(), replacement: word }
        }));
        candidates.dedup_by(|a, b| a.replacement == b.replacement);
        Ok((start, candidates))
    }
}

impl Validator for ShellHelper {
    /// A statement is complete at its `;`; the shell's own one-word commands need none.
    fn validate(&self, ctx: &mut ValidationContext<'_>) -> rustyline::Result<ValidationResult> {
        let input = ctx.input().trim();
        let bare = ["quit", "exit", "\\q", "help", "\\?"].iter().any(|c| input.eq_ignore_ascii_case(c));
        Ok(if input.is_empty() || bare || ends_statement(input) {
            ValidationResult::Valid(None)
        } else {
            ValidationResult::Incomplete
        })
    }
}

/// `input` ends with a `;` that is not inside a trailing `--` comment.
fn ends_statement(input: &str) -> bool {
    let last_line = input.lines().last().unwrap_or_default();
    let code = last_line.split("--").next().unwrap_or_default().trim_end();
    code.ends_with(';')
}

impl Hinter for ShellHelper {
    type Hint = String;
}

impl Highlighter for ShellHelper {}

impl Helper for ShellHelper {}

#[cfg(test)]
mod tests {
    use super::*;
    use rustyline::history::DefaultHistory;

    #[test]
    fn completes_keywords_in_the_case_typed_and_table_names() {
        let names: Names = Arc::new(RwLock::new(vec!["flights".to_string(), "flight_no".to_string()]));
        let helper = ShellHelper::new(names);
        let history = DefaultHistory::new();
        let ctx = Context::new(&history);
        let (start, found) = helper.complete("SELECT * FROM fli", 17, &ctx).unwrap();
        assert_eq!(start, 14);
        let found: Vec<&str> = found.iter().map(|p| p.replacement.as_str()).collect();
        assert_eq!(found, vec!["flights", "flight_no"]);
        let (_, found) = helper.complete("SEL", 3, &ctx).unwrap();
        assert!(found.iter().any(|p| p.replacement == "SELECT"));
        let (_, found) = helper.complete("sel", 3, &ctx).unwrap();
        assert!(found.iter().any(|p| p.replacement == "select"));
        // A word after a character of several bytes starts after all of its bytes.
        let line = "SELECT '€'·fli";
        let (start, found) = helper.complete(line, line.len(), &ctx).unwrap();
        assert_eq!(&line[start..], "fli");
        assert_eq!(found.len(), 2);
    }

    #[test]
    fn a_statement_ends_at_its_semicolon() {
        assert!(ends_statement("SELECT 1;"));
        assert!(ends_statement("SELECT 1; -- done"));
        assert!(!ends_statement("SELECT 1 -- not yet;"));
        assert!(!ends_statement("SELECT\n 1"));
    }
}
