//! Cursor paging over the API's lists: `{"data": [...], "next_cursor": "..."}`, paging on
//! while `next_cursor` is there (a page may be short, even empty, when a search ran out
//! of its scan budget).

use serde_json::Value;

use super::api::{Api, Query};
use super::error::CliError;

/// The API's largest page.
pub const MAX_PAGE: usize = 500;

/// How many items a list command wants.
#[derive(Debug, Clone, clap::Args)]
pub struct ListArgs {
    /// Show at most this many.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: u64,
    /// Every match, page after page (NDJSON with --json); overrides --limit.
    #[arg(long)]
    pub all: bool,
    /// Start after this point: the `next_cursor` a previous listing printed.
    #[arg(long)]
    pub cursor: Option<String>,
}

/// Walks the pages of one listing.
pub struct Pages<'a> {
    api: &'a Api,
    path: &'a str,
    query: Query,
    cursor: Option<String>,
    /// Items still wanted (`None`: all).
    remaining: Option<usize>,
    done: bool,
}

impl<'a> Pages<'a> {
    pub fn new(api: &'a Api, path: &'a str, query: Query, args: &ListArgs) -> Self {
        Self {
            api,
            path,
            query,
            cursor: args.cursor.clone(),
            remaining: (!args.all).then(|| usize::try_from(args.limit).unwrap_or(usize::MAX)),
            done: false,
        }
    }

    /// The next page's items; `None` once the listing (or the wanted count) is done.
    pub async fn next(&mut self) -> Result<Option<Vec<Value>>, CliError> {
        if self.done || self.remaining == Some(0) {
            return Ok(None);
        }
        let size = self.remaining.unwrap_or(MAX_PAGE).min(MAX_PAGE);
        let mut query = self.query.clone();
        query.push(("limit", size.to_string()));
        if let Some(cursor) = &self.cursor {
            query.push(("cursor", cursor.clone()));
        }
        let page = self.api.get(self.path, &query).await?;
        let items = match page.get("data") {
            Some(Value::Array(items)) => items.clone(),
            _ => {
                return Err(CliError::BadAnswer {
                    url: self.api.url(self.path, &query),
                    reason: "the answer has no `data` list".to_owned(),
                });
            }
        };
        self.cursor = page
            .get("next_cursor")
            .and_then(Value::as_str)
            .map(str::to_owned);
        self.done = self.cursor.is_none();
        if let Some(n) = &mut self.remaining {
            *n = n.saturating_sub(items.len());
        }
        Ok(Some(items))
    }

    /// Where a listing cut short by `--limit` would go on, if anywhere.
    pub fn next_cursor(&self) -> Option<&str> {
        self.cursor.as_deref()
    }

    /// Every wanted item (for `--limit`; `--all` listings go page by page instead).
    pub async fn collect(&mut self) -> Result<Vec<Value>, CliError> {
        let mut all = Vec::new();
        while let Some(items) = self.next().await? {
            all.extend(items);
        }
        Ok(all)
    }
}

/// Prints a listing: with `--all`, page by page (NDJSON, or the table's rows as they come);
/// else the wanted items as a JSON page `{data, next_cursor}` or one table, with a hint
/// on stderr when there is more.
pub async fn print_listing(
    mut pages: Pages<'_>,
    args: &ListArgs,
    json: bool,
    titles: &[&str],
    row: impl Fn(&Value) -> Vec<String>,
    what: &str,
) -> Result<(), CliError> {
    use super::output;
    if args.all {
        let mut first = true;
        while let Some(items) = pages.next().await? {
            if json {
                for item in &items {
                    output::print_json(item, false)?;
                }
                continue;
            }
            if items.is_empty() && !first {
                continue;
            }
            let mut table = output::table(titles);
            for item in &items {
                table.add_row(row(item));
            }
            if first {
                output::print_table(&table)?;
            } else {
                output::print_rows(&table)?;
            }
            first = false;
        }
        return Ok(());
    }
    let items = pages.collect().await?;
    let next = pages.next_cursor();
    if json {
        let mut page = serde_json::json!({ "data": items });
        if let Some(cursor) = next {
            page["next_cursor"] = Value::String(cursor.to_owned());
        }
        return output::print_json(&page, true);
    }
    if items.is_empty() {
        eprintln!("no {what}");
        return Ok(());
    }
    let mut table = output::table(titles);
    for item in &items {
        table.add_row(row(item));
    }
    output::print_table(&table)?;
    if let Some(cursor) = next {
        eprintln!("more {what}: pass --cursor {cursor} for the next ones, or --all");
    }
    Ok(())
}
