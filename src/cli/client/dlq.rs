//! `forebay dlq list|retry|discard`: the dead-letter queue (`GET /api/v1/dlq`,
//! `POST /api/v1/dlq/{retry,discard}`, and one delivery by id). A bulk action needs a
//! filter or `--all`, so a bare `forebay dlq discard` never empties the queue by accident.

use serde_json::Value;

use super::connection::Connection;
use super::deliveries::{self, TITLES, row};
use super::error::CliError;
use super::events::path_part;
use super::output::{self, text};
use super::paging::{ListArgs, Pages, print_listing};

#[derive(Debug, clap::Subcommand)]
pub enum DlqCommand {
    /// List dead deliveries, newest first.
    List {
        #[command(flatten)]
        target: Filter,
        #[command(flatten)]
        list: ListArgs,
        #[command(flatten)]
        connection: Connection,
    },
    /// Give dead deliveries a new chance: one by id, those of a route or destination, or
    /// all of them.
    Retry {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        connection: Connection,
    },
    /// Set dead deliveries aside for good (`discarded`, kept for the record).
    Discard {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        connection: Connection,
    },
}

#[derive(Debug, Clone, clap::Args)]
pub struct Filter {
    /// Only dead deliveries of this route.
    #[arg(long)]
    pub route: Option<String>,
    /// Only dead deliveries to this destination.
    #[arg(long)]
    pub destination: Option<String>,
}

impl Filter {
    fn query(&self) -> Vec<(&'static str, String)> {
        vec![
            ("route", self.route.clone().unwrap_or_default()),
            ("destination", self.destination.clone().unwrap_or_default()),
        ]
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct Target {
    /// One dead delivery (`dlv_…`).
    #[arg(conflicts_with_all = ["route", "destination", "all"])]
    pub id: Option<String>,
    #[command(flatten)]
    pub filter: Filter,
    /// Every dead delivery.
    #[arg(long, conflicts_with_all = ["route", "destination"])]
    pub all: bool,
}

pub async fn run(command: DlqCommand) -> Result<(), CliError> {
    match command {
        DlqCommand::List {
            target,
            list,
            connection,
        } => {
            let api = connection.api()?;
            let pages = Pages::new(&api, "/api/v1/dlq", target.query(), &list);
            print_listing(
                pages,
                &list,
                connection.json,
                &TITLES,
                row,
                "dead deliveries",
            )
            .await
        }
        DlqCommand::Retry { target, connection } => match &target.id {
            Some(id) => deliveries::retry(&connection, id).await,
            None => bulk(&connection, &target, "retry", "retried").await,
        },
        DlqCommand::Discard { target, connection } => match &target.id {
            Some(id) => discard_one(&connection, id).await,
            None => bulk(&connection, &target, "discard", "discarded").await,
        },
    }
}

async fn bulk(
    connection: &Connection,
    target: &Target,
    action: &str,
    done: &str,
) -> Result<(), CliError> {
    let filter = &target.filter;
    if !target.all && filter.route.is_none() && filter.destination.is_none() {
        return Err(CliError::Usage(format!(
            "say which dead deliveries to {action}: an id, --route, --destination, or --all for every one"
        )));
    }
    let api = connection.api()?;
    let answer = api
        .post(&format!("/api/v1/dlq/{action}"), &filter.query(), None)
        .await?;
    if connection.json {
        return output::print_json(&answer, true);
    }
    let n = answer.get(done).and_then(Value::as_u64).unwrap_or(0);
    output::say(format!(
        "{done} {n} dead deliver{}",
        if n == 1 { "y" } else { "ies" }
    ))
}

async fn discard_one(connection: &Connection, id: &str) -> Result<(), CliError> {
    let api = connection.api()?;
    let d = api
        .post(
            &format!("/api/v1/deliveries/{}/discard", path_part(id)),
            &Vec::new(),
            None,
        )
        .await?;
    if connection.json {
        return output::print_json(&d, true);
    }
    output::say(format!("{} discarded", text(&d, "id")))
}
