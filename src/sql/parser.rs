//! Splits a sluice script into statements: stream-table DDL parsed here, everything else by
//! DataFusion's parser (`CREATE EXTERNAL TABLE`, `INSERT INTO`, `SELECT`, `SET`, ...).

use std::collections::BTreeMap;

use datafusion::error::DataFusionError;
use datafusion::sql::parser::{DFParser, DFParserBuilder, Statement as DFStatement};
use datafusion::sql::sqlparser::ast::{ColumnDef, ColumnOption, ColumnOptionDef, Expr, Ident};
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::{Location, Token};

use super::dialect::SluiceDialect;
use crate::{Result, SluiceError};

/// `WATERMARK FOR <column> AS <expr>` inside a stream table's column list.
#[derive(Debug, Clone, PartialEq)]
pub struct WatermarkClause {
    /// The event-time column.
    pub column: Ident,
    /// The watermark expression, `column` or `column - INTERVAL ...`.
    pub expr: Expr,
}

/// `CREATE [OR REPLACE] TABLE name [(columns [, WATERMARK FOR c AS c - INTERVAL ...])] WITH (k = 'v', ...)`:
/// a source or sink bound to a connector (Flink's DDL shape; the options follow Spark's reader and
/// writer options in snake case).
#[derive(Debug, Clone, PartialEq)]
pub struct CreateStreamTable {
    /// Table name as written (normalized to lower case unless quoted).
    pub name: String,
    /// Declared columns; empty for a sink that takes its columns from the query.
    pub columns: Vec<ColumnDef>,
    /// The event-time watermark, if declared.
    pub watermark: Option<WatermarkClause>,
    /// `WITH` options, keys lower-cased, values as written.
    pub options: BTreeMap<String, String>,
    /// `OR REPLACE` was given.
    pub or_replace: bool,
}

/// The statement back as SQL (`SHOW CREATE TABLE`): parsing it again gives the same table.
impl std::fmt::Display for CreateStreamTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let plain = self.name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        let name = if plain { Ident::new(&self.name) } else { Ident::with_quote('"', &self.name) };
        write!(f, "CREATE {}TABLE {name}", if self.or_replace { "OR REPLACE " } else { "" })?;
        let mut items: Vec<String> = self.columns.iter().map(ToString::to_string).collect();
        if let Some(w) = &self.watermark {
            items.push(format!("WATERMARK FOR {} AS {}", w.column, w.expr));
        }
        if !items.is_empty() {
            write!(f, " (\n    {}\n)", items.join(",\n    "))?;
        }
        let options: Vec<String> =
            self.options.iter().map(|(k, v)| format!("{k} = '{}'", v.replace('\'', "''"))).collect();
        write!(f, " WITH ({})", options.join(", "))
    }
}

/// One statement of a sluice script.
#[derive(Debug, Clone)]
pub enum SluiceStatement {
    /// A stream source or sink table.
    CreateStreamTable(Box<CreateStreamTable>),
    /// Anything DataFusion parses; `INSERT INTO <stream sink>` and `SELECT` over streams become
    /// streaming queries, the rest runs as DataFusion runs it.
    DataFusion(Box<DFStatement>),
}

/// Parses a script of `;`-separated statements.
///
/// # Errors
/// [`SluiceError::SqlSyntax`] with the line and column of the first syntax error.
pub fn parse_script(sql: &str) -> Result<Vec<SluiceStatement>> {
    let dialect = SluiceDialect::default();
    let mut parser = DFParserBuilder::new(sql)
        .with_dialect(&dialect)
        .build()
        .map_err(|e| syntax_error(&e.find_root().to_string(), Location::of(1, 1)))?;
    let mut statements = Vec::new();
    loop {
        while parser.parser.consume_token(&Token::SemiColon) {}
        let next = parser.parser.peek_token();
        if next.token == Token::EOF {
            return Ok(statements);
        }
        let statement = if is_stream_table(&parser) {
            SluiceStatement::CreateStreamTable(Box::new(
                parse_create_stream_table(&mut parser.parser).map_err(|e| parser_error(&e, &parser.parser))?,
            ))
        } else {
            SluiceStatement::DataFusion(Box::new(parser.parse_statement().map_err(|e| match e.find_root() {
                DataFusionError::SQL(e, _) => parser_error(e, &parser.parser),
                other => syntax_error(&other.message(), parser.parser.peek_token().span.start),
            })?))
        };
        statements.push(statement);
        let next = parser.parser.peek_token();
        if !matches!(next.token, Token::SemiColon | Token::EOF) {
            return Err(syntax_error(
                &format!("expected ';' or the end of the script after a statement, found {next}"),
                next.span.start,
            ));
        }
    }
}

/// A sqlparser error as [`SluiceError::SqlSyntax`]; the position is the one in its text, else
/// where the parser stopped.
fn parser_error(error: &ParserError, parser: &Parser) -> SluiceError {
    let text = match error {
        ParserError::TokenizerError(s) | ParserError::ParserError(s) => s.as_str(),
        ParserError::RecursionLimitExceeded => "the statement nests too deeply (recursion limit exceeded)",
    };
    syntax_error(text, parser.peek_token().span.start)
}

/// Splits sqlparser's ` at Line: L, Column: C` suffix (its `Location` display) off `text`;
/// `fallback` when there is none.
fn syntax_error(text: &str, fallback: Location) -> SluiceError {
    let located = text.rsplit_once(" at Line: ").and_then(|(message, position)| {
        let (line, column) = position.split_once(", Column: ")?;
        Some((message, line.trim().parse().ok()?, column.trim().parse().ok()?))
    });
    let (message, line, column) = located.unwrap_or((text, fallback.line, fallback.column));
    SluiceError::SqlSyntax { line, column, message: message.trim().to_string() }
}

/// `CREATE [OR REPLACE] TABLE` (not `EXTERNAL`, `TEMPORARY`, ... which DataFusion handles).
fn is_stream_table(parser: &DFParser) -> bool {
    let word = |n: usize| match parser.parser.peek_nth_token(n).token {
        Token::Word(w) => Some(w.keyword),
        _ => None,
    };
    if word(0) != Some(Keyword::CREATE) {
        return false;
    }
    match word(1) {
        Some(Keyword::TABLE) => true,
        Some(Keyword::OR) => word(2) == Some(Keyword::REPLACE) && word(3) == Some(Keyword::TABLE),
        _ => false,
    }
}

fn parse_create_stream_table(parser: &mut Parser) -> Result<CreateStreamTable, ParserError> {
    parser.expect_keyword(Keyword::CREATE)?;
    let or_replace = parser.parse_keywords(&[Keyword::OR, Keyword::REPLACE]);
    parser.expect_keyword(Keyword::TABLE)?;
    let name = normalize(&parser.parse_identifier()?);
    let mut columns = Vec::new();
    let mut watermark = None;
    if parser.consume_token(&Token::LParen) {
        loop {
            if peek_word(parser, "WATERMARK") {
                parser.next_token();
                if watermark.is_some() {
                    return parser_err(parser, "a table declares at most one WATERMARK");
                }
                parser.expect_keyword(Keyword::FOR)?;
                let column = parser.parse_identifier()?;
                parser.expect_keyword(Keyword::AS)?;
                watermark = Some(WatermarkClause { column, expr: parser.parse_expr()? });
            } else {
                columns.push(parse_column(parser)?);
            }
            if !parser.consume_token(&Token::Comma) {
                break;
            }
        }
        parser.expect_token(&Token::RParen)?;
    }
    parser.expect_keyword(Keyword::WITH)?;
    parser.expect_token(&Token::LParen)?;
    let mut options = BTreeMap::new();
    loop {
        let key = match parser.next_token().token {
            Token::Word(w) => w.value.to_lowercase(),
            Token::SingleQuotedString(s) => s.to_lowercase(),
            _ => return parser_err(parser, "expected an option name in WITH (...)"),
        };
        parser.expect_token(&Token::Eq)?;
        let value = match parser.next_token().token {
            Token::SingleQuotedString(s) | Token::DoubleQuotedString(s) => s,
            Token::Number(n, _) => n,
            Token::Word(w) => w.value,
            _ => return parser_err(parser, &format!("expected a value for option '{key}'")),
        };
        options.insert(key, value);
        if !parser.consume_token(&Token::Comma) {
            break;
        }
    }
    parser.expect_token(&Token::RParen)?;
    Ok(CreateStreamTable { name, columns, watermark, options, or_replace })
}

/// `name TYPE [NOT NULL | NULL]`; any word is a column name here (the generic dialect would read
/// `key` as the start of a MySQL index definition).
fn parse_column(parser: &mut Parser) -> Result<ColumnDef, ParserError> {
    let name = parser.parse_identifier()?;
    let data_type = parser.parse_data_type()?;
    let mut options = Vec::new();
    if parser.parse_keywords(&[Keyword::NOT, Keyword::NULL]) {
        options.push(ColumnOptionDef { name: None, option: ColumnOption::NotNull });
    } else {
        let _ = parser.parse_keyword(Keyword::NULL);
    }
    Ok(ColumnDef { name, data_type, options })
}

fn peek_word(parser: &Parser, word: &str) -> bool {
    matches!(parser.peek_token().token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word))
}

fn parser_err<T>(parser: &Parser, message: &str) -> Result<T, ParserError> {
    Err(ParserError::ParserError(format!("{message}{}", parser.peek_token().span.start)))
}

/// SQL identifier normalization as DataFusion does it: unquoted names are lower-cased.
pub fn normalize(ident: &Ident) -> String {
    match ident.quote_style {
        Some(_) => ident.value.clone(),
        None => ident.value.to_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_issue_script() {
        let sql = "CREATE TABLE events (key STRING, ts TIMESTAMP, value BIGINT,
                        WATERMARK FOR ts AS ts - INTERVAL '10' SECOND)
              WITH (connector = 'file', path = 'in/events', format = 'json', max_files_per_trigger = '1');
            CREATE TABLE out WITH (connector = 'file', path = 'out', format = 'json', output_mode = 'append');
            INSERT INTO out
            SELECT window.start AS wstart, window.end AS wend, key, count(*) AS cnt, sum(value) AS total
            FROM events GROUP BY window(ts, '10 seconds'), key;";
        let statements = parse_script(sql).unwrap();
        assert_eq!(statements.len(), 3);
        let SluiceStatement::CreateStreamTable(events) = &statements[0] else { panic!("not a stream table") };
        assert_eq!(events.name, "events");
        assert_eq!(events.columns.len(), 3);
        assert_eq!(events.columns[0].name.value, "key");
        assert_eq!(events.watermark.as_ref().unwrap().column.value, "ts");
        assert_eq!(events.options["max_files_per_trigger"], "1");
        let SluiceStatement::CreateStreamTable(out) = &statements[1] else { panic!("not a stream table") };
        assert!(out.columns.is_empty());
        assert!(matches!(statements[2], SluiceStatement::DataFusion(_)));
    }

    #[test]
    fn a_stream_table_prints_as_ddl_that_parses_back_to_it() {
        let sql = "CREATE OR REPLACE TABLE \"Events\" (key STRING NOT NULL, ts TIMESTAMP,
                       WATERMARK FOR ts AS ts - INTERVAL '10' SECOND)
                   WITH (connector = 'file', path = 'it''s', format = 'json')";
        let SluiceStatement::CreateStreamTable(table) = parse_script(sql).unwrap().remove(0) else {
            panic!("not a stream table")
        };
        let printed = table.to_string();
        let SluiceStatement::CreateStreamTable(again) = parse_script(&printed).unwrap().remove(0) else {
            panic!("not a stream table: {printed}")
        };
        assert_eq!(again, table, "{printed}");
    }

    fn position(sql: &str) -> (u64, u64, String) {
        match parse_script(sql).unwrap_err() {
            SluiceError::SqlSyntax { line, column, message } => (line, column, message),
            other => panic!("not a syntax error: {other}"),
        }
    }

    #[test]
    fn syntax_errors_name_the_position() {
        let (line, column, message) = position("CREATE TABLE t (a INT WITH (connector = 'file')");
        assert_eq!((line, column), (1, 23), "{message}");
        assert!(!message.contains("Line:"), "{message}");
        let (line, column, _) = position("SELECT 1\nSELECT 2");
        assert_eq!((line, column), (2, 1));
        let (line, column, message) = position("SELECT 1;\n\nSELECT a FROM t WHERE ;");
        assert_eq!((line, column), (3, 23), "{message}");
        let (line, _, message) = position("CREATE TABLE t (a INT) WITH (connector 'file')");
        assert_eq!(line, 1, "{message}");
        let err = parse_script("SELECT 1 +").unwrap_err().to_string();
        assert_eq!(err.matches("SQL").count(), 1, "{err}");
    }

    #[test]
    fn external_tables_stay_with_datafusion() {
        let statements =
            parse_script("CREATE EXTERNAL TABLE a STORED AS CSV LOCATION 'a.csv'; CREATE VIEW v AS SELECT 1").unwrap();
        assert!(statements.iter().all(|s| matches!(s, SluiceStatement::DataFusion(_))));
    }
}
