//! `forebay deliveries list|show|retry`: `GET /api/v1/deliveries`,
//! `GET /api/v1/deliveries/{id}` (with its attempt log), `POST …/{id}/retry`.

use serde_json::Value;

use super::connection::Connection;
use super::error::CliError;
use super::events::path_part;
use super::output::{self, field, text};
use super::paging::{ListArgs, Pages, print_listing};

#[derive(Debug, clap::Subcommand)]
pub enum DeliveriesCommand {
    /// List deliveries, newest first.
    List {
        /// Only deliveries in this state (pending, in_flight, retrying, delivered, dead,
        /// filtered, discarded, superseded).
        #[arg(long)]
        state: Option<String>,
        /// Only deliveries of this route.
        #[arg(long)]
        route: Option<String>,
        /// Only deliveries to this destination.
        #[arg(long)]
        destination: Option<String>,
        #[command(flatten)]
        list: ListArgs,
        #[command(flatten)]
        connection: Connection,
    },
    /// Show one delivery with its attempts.
    Show {
        /// The delivery id (`dlv_…`).
        id: String,
        #[command(flatten)]
        connection: Connection,
    },
    /// Make a delivery due now (a dead one gets a new chance).
    Retry {
        /// The delivery id (`dlv_…`).
        id: String,
        #[command(flatten)]
        connection: Connection,
    },
}

/// Columns of a delivery listing (also the dead-letter queue's).
pub const TITLES: [&str; 7] = [
    "ID",
    "EVENT",
    "ROUTE",
    "DESTINATION",
    "STATE",
    "ATTEMPTS",
    "LAST ERROR",
];

pub fn row(d: &Value) -> Vec<String> {
    vec![
        field(d, "id"),
        field(d, "event_id"),
        field(d, "route"),
        field(d, "destination"),
        field(d, "state"),
        field(d, "attempts"),
        output::short(&field(d, "last_error"), 60),
    ]
}

pub async fn run(command: DeliveriesCommand) -> Result<(), CliError> {
    match command {
        DeliveriesCommand::List {
            state,
            route,
            destination,
            list,
            connection,
        } => {
            let api = connection.api()?;
            let query = vec![
                ("state", state.unwrap_or_default()),
                ("route", route.unwrap_or_default()),
                ("destination", destination.unwrap_or_default()),
            ];
            let pages = Pages::new(&api, "/api/v1/deliveries", query, &list);
            print_listing(pages, &list, connection.json, &TITLES, row, "deliveries").await
        }
        DeliveriesCommand::Show { id, connection } => {
            let api = connection.api()?;
            let d = api
                .get(
                    &format!("/api/v1/deliveries/{}", path_part(&id)),
                    &Vec::new(),
                )
                .await?;
            if connection.json {
                output::print_json(&d, true)
            } else {
                show(&d)
            }
        }
        DeliveriesCommand::Retry { id, connection } => retry(&connection, &id).await,
    }
}

/// `POST /api/v1/deliveries/{id}/retry` (also `dlq retry ID`).
pub async fn retry(connection: &Connection, id: &str) -> Result<(), CliError> {
    let api = connection.api()?;
    let d = api
        .post(
            &format!("/api/v1/deliveries/{}/retry", path_part(id)),
            &Vec::new(),
            None,
        )
        .await?;
    if connection.json {
        return output::print_json(&d, true);
    }
    output::say(format!(
        "{} is due now ({}, next attempt {} at {})",
        text(&d, "id"),
        field(&d, "state"),
        d.get("attempts").and_then(Value::as_i64).unwrap_or(0) + 1,
        field(&d, "next_attempt_at"),
    ))
}

fn show(d: &Value) -> Result<(), CliError> {
    let mut lines = vec![
        format!("delivery     {}", text(d, "id")),
        format!("event        {}", text(d, "event_id")),
        format!("route        {}", text(d, "route")),
        format!("destination  {}", text(d, "destination")),
        format!("webhook-id   {}", field(d, "webhook_id")),
        format!("state        {}", text(d, "state")),
        format!("attempts     {}", field(d, "attempts")),
        format!("next attempt {}", field(d, "next_attempt_at")),
        format!("created      {}", field(d, "created_at")),
        format!("updated      {}", field(d, "updated_at")),
        format!("last error   {}", field(d, "last_error")),
    ];
    if d.get("ordering_key").is_some() {
        lines.push(format!("ordering key {}", field(d, "ordering_key")));
    }
    if let Some(payload) = d.get("payload") {
        lines.push(String::new());
        lines.push("payload (the transform's output)".to_owned());
        lines.push(output::body_for_people(payload));
    }
    for line in lines {
        output::say(line)?;
    }
    let attempts = d
        .get("attempt_log")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    output::say("")?;
    if attempts.is_empty() {
        return output::say("attempts: none yet");
    }
    let mut table = output::table(&["#", "STARTED", "TOOK", "RESULT", "RESPONSE"]);
    for a in &attempts {
        let result = match (a.get("status").and_then(Value::as_i64), text(a, "error")) {
            (Some(status), "") => status.to_string(),
            (Some(status), error) => format!("{status} {}", output::short(error, 50)),
            (None, error) => output::short(error, 60),
        };
        let response = match a.get("body").and_then(Value::as_str) {
            Some(body) if !body.trim().is_empty() => output::short(body, 60),
            None if a.get("body_base64").is_some() => "(binary)".to_owned(),
            _ => "-".to_owned(),
        };
        table.add_row(vec![
            field(a, "number"),
            field(a, "started_at"),
            format!("{} ms", field(a, "duration_ms")),
            result,
            response,
        ]);
    }
    output::print_table(&table)
}
