//! `forebay events list|show|tail`: stored events through `GET /api/v1/events`,
//! `GET /api/v1/events/{id}` and `GET /api/v1/stream`.

use serde_json::Value;

use super::connection::Connection;
use super::error::CliError;
use super::filters::EventFilter;
use super::output::{self, field, text};
use super::paging::{ListArgs, Pages, print_listing};

#[derive(Debug, clap::Subcommand)]
pub enum EventsCommand {
    /// List and search stored events, newest first.
    List {
        #[command(flatten)]
        filter: EventFilter,
        #[command(flatten)]
        list: ListArgs,
        #[command(flatten)]
        connection: Connection,
    },
    /// Show one event: request line, headers, body and deliveries.
    Show {
        /// The event id (`evt_…`).
        id: String,
        #[command(flatten)]
        connection: Connection,
    },
    /// Print new events as they arrive (one line each; one JSON object each with --json).
    Tail {
        /// Only events of this source.
        #[arg(long)]
        source: Option<String>,
        #[command(flatten)]
        connection: Connection,
    },
}

pub async fn run(command: EventsCommand) -> Result<(), CliError> {
    match command {
        EventsCommand::List {
            filter,
            list,
            connection,
        } => {
            let api = connection.api()?;
            let pages = Pages::new(&api, "/api/v1/events", filter.query(), &list);
            print_listing(
                pages,
                &list,
                connection.json,
                &["ID", "RECEIVED", "SOURCE", "METHOD", "SIZE", "DELIVERIES"],
                row,
                "events",
            )
            .await
        }
        EventsCommand::Show { id, connection } => {
            let api = connection.api()?;
            let event = api
                .get(&format!("/api/v1/events/{}", path_part(&id)), &Vec::new())
                .await?;
            if connection.json {
                output::print_json(&event, true)
            } else {
                show(&event)
            }
        }
        EventsCommand::Tail { source, connection } => super::tail::run(&connection, source).await,
    }
}

fn row(e: &Value) -> Vec<String> {
    vec![
        field(e, "id"),
        field(e, "received_at"),
        field(e, "source"),
        field(e, "method"),
        output::size(e.get("body_size").and_then(Value::as_u64).unwrap_or(0)),
        output::delivery_summary(e.get("deliveries")),
    ]
}

fn show(e: &Value) -> Result<(), CliError> {
    let query = match e.get("query").and_then(Value::as_str) {
        Some(q) if !q.is_empty() => format!("?{q}"),
        _ => String::new(),
    };
    let mut lines = vec![
        format!("event      {}", text(e, "id")),
        format!("source     {}", text(e, "source")),
        format!("received   {}", text(e, "received_at")),
        format!(
            "request    {} {}{query}",
            text(e, "method"),
            text(e, "path")
        ),
        format!("from       {}", field(e, "remote_addr")),
        format!(
            "size       {}",
            output::size(e.get("body_size").and_then(Value::as_u64).unwrap_or(0))
        ),
        format!("dedup key  {}", field(e, "dedup_key")),
        format!("duplicates {}", field(e, "duplicates")),
        String::new(),
        "headers".to_owned(),
    ];
    if let Some(headers) = e.get("headers").and_then(Value::as_object) {
        let mut names: Vec<&String> = headers.keys().collect();
        names.sort();
        for name in names {
            lines.push(format!(
                "  {name}: {}",
                headers[name].as_str().unwrap_or_default()
            ));
        }
    }
    lines.push(String::new());
    lines.push("body".to_owned());
    lines.push(output::body_for_people(e));
    lines.push(String::new());
    for line in lines {
        output::say(line)?;
    }
    let deliveries = e
        .get("deliveries")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if deliveries.is_empty() {
        return output::say("deliveries: none (no route takes this source)");
    }
    let mut table = output::table(&["DELIVERY", "ROUTE", "DESTINATION", "STATE", "ATTEMPTS"]);
    for d in &deliveries {
        table.add_row(vec![
            field(d, "id"),
            field(d, "route"),
            field(d, "destination"),
            field(d, "state"),
            field(d, "attempts"),
        ]);
    }
    output::print_table(&table)
}

/// An id as one path segment (ids are `[a-z0-9_]`; anything else is escaped so that a
/// mistyped id is answered 404, not routed elsewhere).
pub fn path_part(id: &str) -> String {
    percent_encoding::utf8_percent_encode(id, percent_encoding::NON_ALPHANUMERIC)
        .to_string()
        .replace("%5F", "_")
}
