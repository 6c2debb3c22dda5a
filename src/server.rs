//! `run(config, listeners, shutdown)`: the whole server, with nothing hidden.
//!
//! Opens the store, serves the ingest and admin routers on the listeners it is given,
//! and on `shutdown` stops accepting, lets requests already read finish (commit or 503)
//! within `server.shutdown_timeout`, then closes the store.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::middleware::from_fn_with_state;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore, watch};
use tower::ServiceExt;

use crate::admin::{self, AdminState};
use crate::archive::{Archiver, Location};
use crate::clock::{Clock, SystemClock};
use crate::config::{Backend, Config, Role, Server, Storage};
use crate::deliver::{self, Worker};
use crate::header_limits::{self, HeaderLimits};
use crate::ingest::{self, IngestState};
use crate::live::{Live, Running};
use crate::maintenance::Maintenance;
use crate::replay::Replayer;
use crate::routing::Programs;
use crate::routing::prepare::Preparer;
use crate::size_cap::{Capacity, SizeCap};
use crate::store::postgres::{PostgresOptions, PostgresStore};
use crate::store::seal::Sealer;
use crate::store::sqlite::{SqliteOptions, SqliteStore};
use crate::store::{Paused, Store, StoreError};

/// Time broker connections get at shutdown to close cleanly (nothing is in flight then).
const BROKER_CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Time the store always gets at shutdown to commit its last group.
const STORE_CLOSE_GRACE: Duration = Duration::from_secs(5);

/// The two listeners, bound by the caller (tests bind port 0).
pub struct Listeners {
    pub ingest: TcpListener,
    pub admin: TcpListener,
}

impl Listeners {
    /// Binds the addresses in `[server]`.
    pub async fn bind(server: &Server) -> Result<Self, ServeError> {
        let bind = |addr: SocketAddr, key: &'static str| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| ServeError::Bind { key, addr, source })
        };
        Ok(Self {
            ingest: bind(server.ingest_listen, "server.ingest_listen").await?,
            admin: bind(server.admin_listen, "server.admin_listen").await?,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(
        "cannot listen on {addr} ({key}): {source}; pick a free port or stop the other process"
    )]
    Bind {
        key: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the store")]
    Store(#[from] StoreError),
    #[error("cannot set up a destination: {0}")]
    Destination(String),
    #[error("cannot set up the archive: {0}")]
    Archive(#[from] crate::archive::location::LocationError),
}

/// Opens the store named by `[storage]` (connecting and migrating, for PostgreSQL).
pub async fn open_store(storage: &Storage) -> Result<Arc<dyn Store>, StoreError> {
    match &storage.backend {
        Backend::Postgres {
            url,
            schema,
            pool_size,
        } => {
            let store = PostgresStore::open(
                url,
                PostgresOptions {
                    schema: schema.clone(),
                    pool_size: *pool_size,
                    connect_timeout: storage.busy_timeout.0,
                    max_batch: storage.max_batch,
                    queue_depth: storage.queue_depth,
                    commit_timeout: storage.commit_timeout.0,
                    keys: storage.encryption.clone(),
                },
            )
            .await?;
            Ok(store)
        }
        Backend::Sqlite { path } => {
            let store = SqliteStore::open(
                path,
                SqliteOptions {
                    busy_timeout: storage.busy_timeout.0,
                    max_batch: storage.max_batch,
                    queue_depth: storage.queue_depth,
                    commit_timeout: storage.commit_timeout.0,
                    keys: storage.encryption.clone(),
                    scrub_freed: storage.scrub_freed,
                    ..SqliteOptions::default()
                },
            )?;
            Ok(store)
        }
    }
}

/// Runs forebay until `shutdown` resolves.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let store = open_store(&config.storage).await?;
    run_with_store(config, store, listeners, shutdown).await
}

/// Runs forebay on an open store until `shutdown` resolves, then closes the store.
pub async fn run_with_store(
    config: Config,
    store: Arc<dyn Store>,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    run_with_clock(config, store, listeners, shutdown, Arc::new(SystemClock)).await
}

/// [`run_with_store`] with the delivery engine on `clock` (tests walk retry schedules
/// on a [`crate::clock::ManualClock`]).
pub async fn run_with_clock(
    config: Config,
    store: Arc<dyn Store>,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send,
    clock: Arc<dyn Clock>,
) -> Result<(), ServeError> {
    // Process-wide and idempotent; before serving, so no count is lost.
    crate::metrics::install();
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    let destinations = deliver::destinations(&config).map_err(ServeError::Destination)?;
    let pauses = Arc::new(deliver::pause::Pauses::new(paused_at_start(&*store).await?));
    let wake = Arc::new(Notify::new());
    let prepare_wake = Arc::new(Notify::new());
    let programs = Programs::new(&config);
    // With several processes on one store, the store holds the limits for all of them
    // and wakes this engine on their commits.
    if config.role != Role::Ingest {
        store.join_cluster(crate::live::cluster_of(&config, &wake, &prepare_wake));
    }
    let role = config.role;
    let server = config.server.clone();
    let storage_max_size = config.storage.max_size;
    let measured_free = matches!(config.storage.backend, Backend::Sqlite { .. });
    let archiver = match &config.storage.archive {
        Some(archive) => Some(Archiver {
            store: store.clone(),
            clock: clock.clone(),
            location: Location::open(&archive.url, &archive.location)?,
            after: archive.after.0,
            sealer: Arc::new(Sealer::new(&config.storage.encryption)),
        }),
        None => None,
    };
    if storage_max_size.is_some() {
        // A store that cannot be measured cannot be capped: say so now, not in the log
        // of every check.
        store.usage().await?;
    }
    let live = Live::new(
        Running {
            generation: 1,
            batches: Arc::new(crate::deliver::batch::batches_of(&config)),
            config,
            destinations: Arc::new(destinations),
            programs,
        },
        store.clone(),
        wake.clone(),
        prepare_wake.clone(),
    );
    let (worker_stop, worker_stopped) = watch::channel(false);
    let preparer_stopped = worker_stopped.clone();
    // Every role runs it; the store elects the one process of a cluster that does work.
    let maintenance = tokio::spawn(
        Maintenance {
            store: store.clone(),
            clock: clock.clone(),
            retention: live.retention(),
        }
        .run(worker_stopped.clone()),
    );
    // Every role runs it, like maintenance; only the leader archives.
    let archiver = archiver.map(|a| tokio::spawn(a.run(worker_stopped.clone())));
    let capacity = Arc::new(Capacity::new(storage_max_size));
    // With a cap; and on SQLite always, where measuring is free and freed pages go back
    // to the file system after retention too. (PostgreSQL is measured with an extension
    // that only `max_size` asks for.)
    let size_cap = (storage_max_size.is_some() || measured_free).then(|| {
        tokio::spawn(
            SizeCap {
                store: store.clone(),
                capacity: capacity.clone(),
            }
            .run(worker_stopped.clone()),
        )
    });
    let activity = tokio::spawn(Maintenance::write_activity(
        store.clone(),
        worker_stopped.clone(),
    ));
    let worker = (role != Role::Ingest).then(|| {
        tokio::spawn(
            Worker {
                store: store.clone(),
                destinations: live.destinations(),
                batches: live.batches(),
                wake: wake.clone(),
                slots: SEND_SLOTS,
                pauses: pauses.clone(),
                clock,
            }
            .run(worker_stopped, server.shutdown_timeout.0),
        )
    });
    // Always there when delivering: a reload may add a route with expressions.
    let preparer = (role != Role::Ingest).then(|| {
        tokio::spawn(
            Preparer {
                store: store.clone(),
                programs: live.programs(),
                pauses: pauses.clone(),
                wake: prepare_wake.clone(),
                deliver: wake.clone(),
            }
            .run(preparer_stopped),
        )
    });
    let ingest = match role {
        Role::Deliver => ingest::deliver_only_router(store.clone()),
        Role::Ingest | Role::All => ingest::router(IngestState::new(
            live.clone(),
            store.clone(),
            wake.clone(),
            prepare_wake.clone(),
            capacity.clone(),
        )),
    };
    let replayer = Replayer::new(
        live.clone(),
        store.clone(),
        wake.clone(),
        prepare_wake.clone(),
    );
    replayer.resume().await;
    let (stop_tx, stop_rx) = watch::channel(false);
    let reloads = crate::live::reload_on_hangup(live.clone(), stop_rx.clone());
    let admin_state = AdminState {
        prepare_wake: prepare_wake.clone(),
        stopping: stop_rx.clone(),
        replayer,
        rekeyer: Arc::default(),
        capacity,
        store: store.clone(),
        token: server.admin_token.clone(),
        wake: wake.clone(),
        pauses,
        live: live.clone(),
    };
    let admin = admin::router(admin_state.clone()).merge(crate::dashboard::router(admin_state));

    // Both listeners hold requests to the configured header limits (JSON 431).
    let limits = header_limits_of(&server);
    let ingest = ingest.layer(from_fn_with_state(limits, header_limits::enforce));
    let admin = admin.layer(from_fn_with_state(limits, header_limits::enforce));
    let builder = connection_builder(&server);
    let graceful = GracefulShutdown::new();
    let stopper = async {
        shutdown.await;
        tracing::info!("shutting down: no new connections; finishing requests already read");
        let _ = stop_tx.send(true);
        // The worker stops claiming at once; its sends in flight drain meanwhile.
        let _ = worker_stop.send(true);
    };
    let serve = |listener, router| Acceptor {
        listener,
        router,
        builder: &builder,
        graceful: &graceful,
        open: Arc::new(Semaphore::new(server.max_connections)),
        limit: server.max_connections,
    };
    // Everything that can fail at start has succeeded: systemd may count forebay up.
    crate::service_manager::ready(&format!(
        "listening: ingest=http://{} admin=http://{}",
        listeners
            .ingest
            .local_addr()
            .map_or("?".to_owned(), |a| a.to_string()),
        listeners
            .admin
            .local_addr()
            .map_or("?".to_owned(), |a| a.to_string())
    ));
    crate::service_manager::spawn_watchdog();
    tokio::join!(
        serve(&listeners.ingest, &ingest).run(stop_rx.clone()),
        serve(&listeners.admin, &admin).run(stop_rx),
        stopper,
    );
    // Close the sockets now, so new connections are refused rather than left waiting in
    // the kernel's backlog while in-flight requests finish.
    drop(listeners);
    // One budget for the whole shutdown: connections first, then the store's last commit.
    let deadline = tokio::time::Instant::now() + server.shutdown_timeout.0;
    if tokio::time::timeout_at(deadline, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            "requests still in progress after server.shutdown_timeout; closing the store under them (they will be answered 503)"
        );
    }
    // Sends in flight finish (or are left for the next start) before the store closes.
    if let Some(worker) = worker {
        let _ = worker.await;
        // Brokers are told the connection ends, rather than seeing it cut.
        let close_all = async {
            for destination in live.current().destinations.values() {
                destination.close().await;
            }
        };
        if tokio::time::timeout(BROKER_CLOSE_GRACE, close_all)
            .await
            .is_err()
        {
            tracing::warn!("a broker connection did not close in time; it was dropped");
        }
    }
    if let Some(preparer) = preparer {
        let _ = preparer.await;
    }
    let _ = reloads.await;
    let _ = maintenance.await;
    if let Some(size_cap) = size_cap {
        let _ = size_cap.await;
    }
    if let Some(archiver) = archiver {
        let _ = archiver.await;
    }
    let _ = activity.await;
    // The store's last group always gets a moment, even when the connections used the
    // whole budget: requests still waiting on it are then answered 503, not cut off.
    let close_by = deadline.max(tokio::time::Instant::now() + STORE_CLOSE_GRACE);
    if tokio::time::timeout_at(close_by, store.close())
        .await
        .is_err()
    {
        tracing::error!(
            "the store did not finish its last commit in time; requests not yet answered were not acknowledged"
        );
    }
    tracing::info!("stopped");
    Ok(())
}

/// The paused routes and destinations, read once at start. A shared store may drop a
/// connection just then (a failover, a restart): that is retried for a while rather
/// than ending a process that has already announced it is listening.
async fn paused_at_start(store: &dyn Store) -> Result<Vec<Paused>, StoreError> {
    let give_up = tokio::time::Instant::now() + START_RETRIES_FOR;
    let mut wait = Duration::from_millis(100);
    loop {
        match store.paused().await {
            Err(e) if e.is_unavailable() && tokio::time::Instant::now() + wait < give_up => {
                tracing::warn!(error = %crate::error_chain::Chain(&e), "the store did not answer at start; trying again");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(2));
            }
            result => return result,
        }
    }
}

/// How long start-up keeps retrying a store that does not answer.
const START_RETRIES_FOR: Duration = Duration::from_secs(30);

/// Most deliveries sent at once by one process.
const SEND_SLOTS: usize = 256;

/// hyper's side of the header limits: a wall well past them (see `header_limits`).
fn connection_builder(server: &Server) -> auto::Builder<TokioExecutor> {
    let limits = header_limits_of(server);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(server.read_timeout.0)
        .max_headers(limits.hyper_max_headers())
        .max_buf_size(limits.hyper_max_buf());
    // HTTP/2 connections (h2c) have no header-read timeout; pings close dead ones.
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(10))
        .max_header_list_size(u32::try_from(limits.hyper_max_buf()).unwrap_or(u32::MAX))
        // Data a client may send ahead of what is read, per connection: with
        // `max_connections`, the bound on memory held in HTTP/2 buffers.
        .initial_connection_window_size(H2_WINDOW)
        .initial_stream_window_size(H2_WINDOW);
    builder
}

/// The HTTP/2 flow-control window of a connection and of each of its streams.
const H2_WINDOW: u32 = 256 * 1024;

fn header_limits_of(server: &Server) -> HeaderLimits {
    HeaderLimits {
        max_headers: server.max_headers,
        max_header_bytes: server.max_header_bytes,
    }
}

/// One listener's accept loop.
struct Acceptor<'a> {
    listener: &'a TcpListener,
    router: &'a Router,
    builder: &'a auto::Builder<TokioExecutor>,
    graceful: &'a GracefulShutdown,
    /// One permit per open connection (`server.max_connections`): each connection
    /// holds memory (its read buffer, an HTTP/2 window), so their number is what
    /// bounds it. At the cap, accepting waits and new connections queue in the kernel.
    open: Arc<Semaphore>,
    limit: usize,
}

impl Acceptor<'_> {
    /// Accepts connections until `stop` changes; each connection is watched by `graceful`.
    async fn run(self, mut stop: watch::Receiver<bool>) {
        loop {
            let permit = match self.open.clone().try_acquire_owned() {
                Ok(permit) => permit,
                Err(_) => {
                    crate::throttled!(
                        warn,
                        limit = self.limit,
                        "every connection allowed is open (server.max_connections); new ones wait until one closes"
                    );
                    tokio::select! {
                        permit = self.open.clone().acquire_owned() => match permit {
                            Ok(permit) => permit,
                            Err(_) => return, // never closed
                        },
                        _ = stop.changed() => return,
                    }
                }
            };
            let (stream, remote) = tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok(conn) => conn,
                    Err(e) => {
                        // Out of file descriptors and the like: pause instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = stop.changed() => return,
            };
            let _ = stream.set_nodelay(true);
            let service =
                self.router
                    .clone()
                    .map_request(move |mut req: http::Request<Incoming>| {
                        req.extensions_mut().insert(ConnectInfo(remote));
                        req
                    });
            let connection = self
                .builder
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
                .into_owned();
            let connection = self.graceful.watch(connection);
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!(error = %e, %remote, "connection ended with an error");
                }
                drop(permit);
            });
        }
    }
}
