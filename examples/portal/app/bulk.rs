//! Bulk invitations from CSV, in the columns of Entra's bulk invite
//! template: `Email address to invite`, `Redirection url`, `Send invitation
//! message (true or false)`, `Customized invitation message`, plus an
//! optional `Display name`. The short names `email`, `redirectUrl`,
//! `sendInvitationMessage`, `message` and `displayName` are accepted too,
//! in any case. A first line starting with `version:` (Entra's template
//! has one) is skipped.
//!
//! Fields follow RFC 4180: separated by commas, optionally in double
//! quotes, a quote in a quoted field doubled. Limits: [`MAX_CSV_BYTES`] and
//! [`MAX_ROWS`]; a file over either is refused as a whole, before anything
//! is invited. Row errors (a bad address, a refused domain) do not stop the
//! other rows; each row gets its own result.

use std::fmt;

/// Largest CSV accepted, in bytes.
pub const MAX_CSV_BYTES: usize = 256 * 1024;
/// Most invitation rows in one upload.
pub const MAX_ROWS: usize = 500;

/// One invitation row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// The line number in the file (1-based).
    pub line: usize,
    /// The address.
    pub email: String,
    /// The display name (may be empty).
    pub display_name: String,
    /// The redirect URL (empty: the demo app).
    pub redirect_url: String,
    /// Whether to mail the invitation (default true).
    pub send: bool,
    /// The customized message (may be empty).
    pub message: String,
}

/// The outcome of one row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowResult {
    /// The line number.
    pub line: usize,
    /// The address as given.
    pub email: String,
    /// Whether the invitation was made.
    pub ok: bool,
    /// What happened.
    pub outcome: String,
}

/// Why a CSV upload was refused as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CsvError {
    /// Nothing but blank lines.
    Empty,
    /// Larger than [`MAX_CSV_BYTES`].
    TooLarge,
    /// More than [`MAX_ROWS`] rows.
    TooManyRows,
    /// No column for the address in the header line.
    NoEmailColumn,
    /// A header names a column twice or one not known.
    BadHeader(String),
    /// A line that is not valid CSV.
    Malformed {
        /// The line.
        line: usize,
        /// Why.
        reason: &'static str,
    },
    /// A `Send invitation message` value other than true or false.
    BadBoolean {
        /// The line.
        line: usize,
    },
}

impl fmt::Display for CsvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CsvError::Empty => f.write_str("the CSV is empty"),
            CsvError::TooLarge => write!(f, "the CSV is larger than {} KiB", MAX_CSV_BYTES / 1024),
            CsvError::TooManyRows => write!(f, "the CSV has more than {MAX_ROWS} rows"),
            CsvError::NoEmailColumn => {
                f.write_str("the header line has no `Email address to invite` (or `email`) column")
            }
            CsvError::BadHeader(name) => {
                write!(f, "the header line has an unknown or repeated column `{name}`")
            }
            CsvError::Malformed { line, reason } => write!(f, "line {line}: {reason}"),
            CsvError::BadBoolean { line } => {
                write!(f, "line {line}: `Send invitation message` must be true or false")
            }
        }
    }
}

impl std::error::Error for CsvError {}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Column {
    Email,
    DisplayName,
    Redirect,
    Send,
    Message,
}

fn column(name: &str) -> Option<Column> {
    let n: String = name
        .trim()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase();
    Some(match n.as_str() {
        "emailaddresstoinvite" | "email" | "emailaddress" | "inviteduseremailaddress" => Column::Email,
        "displayname" | "inviteduserdisplayname" => Column::DisplayName,
        "redirectionurl" | "redirecturl" | "inviteredirecturl" => Column::Redirect,
        "sendinvitationmessage(trueorfalse)" | "sendinvitationmessage" => Column::Send,
        "customizedinvitationmessage" | "message" | "customizedmessagebody" => Column::Message,
        _ => return None,
    })
}

/// Splits `text` into records of fields (RFC 4180), with each record's
/// first line number.
fn records(text: &str) -> Result<Vec<(usize, Vec<String>)>, CsvError> {
    let mut out = Vec::new();
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut line = 1usize;
    let mut record_line = 1usize;
    let mut quoted = false;
    let mut field_started_quoted = false;
    let mut quote_line = 1usize;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                '\n' => {
                    line += 1;
                    field.push('\n');
                }
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' if field.is_empty() && !field_started_quoted => {
                quoted = true;
                field_started_quoted = true;
                quote_line = line;
            }
            '"' => {
                return Err(CsvError::Malformed {
                    line,
                    reason: "a quote inside an unquoted field",
                });
            }
            ',' => {
                fields.push(std::mem::take(&mut field));
                field_started_quoted = false;
            }
            '\r' => {}
            '\n' => {
                fields.push(std::mem::take(&mut field));
                field_started_quoted = false;
                out.push((record_line, std::mem::take(&mut fields)));
                line += 1;
                record_line = line;
            }
            _ if field_started_quoted => {
                return Err(CsvError::Malformed {
                    line,
                    reason: "text after a closing quote",
                });
            }
            _ => field.push(c),
        }
        if out.len() > MAX_ROWS + 2 {
            return Err(CsvError::TooManyRows);
        }
    }
    if quoted {
        return Err(CsvError::Malformed {
            line: quote_line,
            reason: "a quoted field is not closed",
        });
    }
    if !field.is_empty() || !fields.is_empty() {
        fields.push(field);
        out.push((record_line, fields));
    }
    Ok(out)
}

/// Parses an upload into invitation rows.
///
/// # Errors
///
/// A [`CsvError`] for the file as a whole; nothing is invited then.
pub fn parse(text: &str) -> Result<Vec<Row>, CsvError> {
    if text.len() > MAX_CSV_BYTES {
        return Err(CsvError::TooLarge);
    }
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut records = records(text)?
        .into_iter()
        .filter(|(_, fields)| fields.iter().any(|f| !f.trim().is_empty()))
        .peekable();
    if records.peek().is_some_and(|(_, f)| {
        f.first()
            .is_some_and(|v| v.trim().to_ascii_lowercase().starts_with("version:"))
    }) {
        records.next();
    }
    let (_, header) = records.next().ok_or(CsvError::Empty)?;
    let mut columns = Vec::with_capacity(header.len());
    for name in &header {
        let col = column(name).ok_or_else(|| CsvError::BadHeader(name.trim().to_owned()))?;
        if columns.contains(&col) {
            return Err(CsvError::BadHeader(name.trim().to_owned()));
        }
        columns.push(col);
    }
    if !columns.contains(&Column::Email) {
        return Err(CsvError::NoEmailColumn);
    }
    let mut rows = Vec::new();
    for (line, fields) in records {
        if rows.len() == MAX_ROWS {
            return Err(CsvError::TooManyRows);
        }
        if fields.len() > columns.len() {
            return Err(CsvError::Malformed {
                line,
                reason: "more fields than the header line has columns",
            });
        }
        let mut row = Row {
            line,
            email: String::new(),
            display_name: String::new(),
            redirect_url: String::new(),
            send: true,
            message: String::new(),
        };
        for (col, value) in columns.iter().zip(fields) {
            let value = value.trim().to_owned();
            match col {
                Column::Email => row.email = value,
                Column::DisplayName => row.display_name = value,
                Column::Redirect => row.redirect_url = value,
                Column::Message => row.message = value,
                Column::Send => {
                    row.send = match value.to_ascii_lowercase().as_str() {
                        "" | "true" => true,
                        "false" => false,
                        _ => return Err(CsvError::BadBoolean { line }),
                    }
                }
            }
        }
        rows.push(row);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entra_template_with_quotes() {
        let csv = "version:v1.0\n\
                   Email address to invite [inviteeEmail] Required,Redirection url,Send invitation message (true or false),Customized invitation message\n";
        // The template's header carries a bracketed note; plain names are required here.
        assert!(matches!(parse(csv), Err(CsvError::BadHeader(_))));
        let csv = "Email address to invite,Redirection url,Send invitation message (true or false),Customized invitation message\r\n\
                   ada@fabrikam.example,,true,\"Welcome, \"\"Ada\"\"\"\r\n\
                   \r\n\
                   bob@fabrikam.example,,false,\n";
        let rows = parse(csv).unwrap_or_default();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].message, "Welcome, \"Ada\"");
        assert!(!rows[1].send);
        assert_eq!(rows[1].line, 4);
    }

    #[test]
    fn refusals_name_the_problem() {
        assert_eq!(parse(""), Err(CsvError::Empty));
        assert_eq!(parse("name\nx\n"), Err(CsvError::BadHeader("name".to_owned())));
        assert_eq!(parse("displayName\nx\n"), Err(CsvError::NoEmailColumn));
        assert!(matches!(
            parse("email\n\"open\n"),
            Err(CsvError::Malformed { line: 2, .. })
        ));
        assert!(matches!(
            parse("email\na\"b\n"),
            Err(CsvError::Malformed { line: 2, .. })
        ));
        assert!(matches!(
            parse("email\na,b\n"),
            Err(CsvError::Malformed { line: 2, .. })
        ));
        assert_eq!(
            parse("email,send\na,maybe\n"),
            Err(CsvError::BadHeader("send".to_owned()))
        );
        assert_eq!(
            parse("email,sendInvitationMessage\na,maybe\n"),
            Err(CsvError::BadBoolean { line: 2 })
        );
        let many = format!("email\n{}", "a@b.example\n".repeat(MAX_ROWS + 1));
        assert_eq!(parse(&many), Err(CsvError::TooManyRows));
        let big = "x".repeat(MAX_CSV_BYTES + 1);
        assert_eq!(parse(&big), Err(CsvError::TooLarge));
    }
}
