//! `cairn`: the one binary. Parses arguments, calls the libraries, prints, and sets the exit
//! code (0 success, 1 failure, 2 bad usage).

mod agent;
mod cloud_buckets;
mod cloud_cmd;
mod cloud_db;
mod cloud_decrypt;
mod cloud_explore;
mod cloud_options;
mod config;
mod connect_cmd;
mod debug_cmd;
mod discovery;
mod drive_cmd;
mod explore;
mod generate_cmd;
mod log_output;
mod malloc_tune;
mod output;
mod progress_bar;
mod run;
mod schedule_clock;
mod server_admin;
mod server_cloud;
mod server_cmd;
mod server_config;
mod server_config_backup;
mod server_log;
mod server_migrate;
mod share_cmd;
mod status;
mod task_cmd;
mod task_lock;
mod task_log;

use std::path::PathBuf;

use clap::{CommandFactory, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cairn",
    version,
    about = "Self-hosted drive: a server that keeps every version, and the client that backs folders up to it"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run and administer a cairn server.
    Server {
        #[command(subcommand)]
        cmd: server_cmd::ServerCmd,
    },
    /// Save (or edit) a connection to a cairn server; `connect list`, `connect remove NAME`.
    Connect(connect_cmd::ConnectCmd),
    /// Backup tasks: upload local folders to a server folder, one way.
    Backup {
        #[command(subcommand)]
        cmd: task_cmd::BackupCmd,
    },
    /// Drive tasks: keep a local folder in sync with a server folder, both ways or download-only.
    Drive {
        #[command(subcommand)]
        cmd: drive_cmd::DriveCmd,
    },
    /// Public clouds: connections (`connect`, `list`, `edit`, `remove`) and cloud tasks (`add`).
    Cloud {
        #[command(subcommand)]
        cmd: cloud_cmd::CloudCmd,
    },
    /// Sharing links to files and folders on a server: `create`, `list`, `revoke`.
    Share {
        #[command(subcommand)]
        cmd: share_cmd::ShareCmd,
    },
    /// Change the settings of any task.
    Task {
        #[command(subcommand)]
        cmd: TaskCmd,
    },
    /// Run tasks once, to completion.
    Run(run::RunCmd),
    /// Run all tasks continuously (watcher plus periodic rescan).
    Agent(agent::AgentCmd),
    /// Pause a task (the running agent stops working on it).
    Pause { task: String },
    /// Resume a paused task, or one waiting for deletions to be confirmed.
    Resume {
        task: String,
        /// Let the next pass delete although it deletes more than half of the files, or the
        /// local folder was emptied.
        #[arg(long)]
        confirm_deletes: bool,
    },
    /// Show the state and recent activity of tasks.
    Status {
        /// A task name, or a file or folder inside a task's folder.
        task: Option<String>,
        /// Print JSON (fields in docs/json.md).
        #[arg(long)]
        json: bool,
    },
    /// Show a task's log.
    Log {
        task: Option<String>,
        /// How many lines from the end.
        #[arg(long, default_value_t = 50)]
        lines: usize,
        /// Only the download history.
        #[arg(long)]
        downloads: bool,
        /// Print JSON (fields in docs/json.md).
        #[arg(long)]
        json: bool,
    },
    /// Every version of a file: time, size, device.
    Versions {
        task: String,
        path: PathBuf,
        /// Print JSON (see docs/json.md).
        #[arg(long)]
        json: bool,
    },
    /// List a task's files, now or at a time.
    Ls(explore::LsCmd),
    /// Restore a file, a folder or a whole task.
    Restore(explore::RestoreCmd),
    /// Download one version of a file.
    Download(explore::DownloadCmd),
    /// Write shell completions and man pages (for packagers: scripts/package).
    #[command(hide = true)]
    Generate(generate_cmd::GenerateCmd),
    /// Measurements for the benchmarks (bench/scale.sh).
    #[command(hide = true)]
    Debug {
        #[command(subcommand)]
        cmd: debug_cmd::DebugCmd,
    },
}

#[derive(Subcommand)]
enum TaskCmd {
    /// Change settings of a task (drive or backup).
    Set(drive_cmd::TaskSetCmd),
}

fn main() {
    let cli = Cli::parse();
    // Daemons keep the default: their output closing is worth a report.
    let daemon = matches!(
        cli.cmd,
        Cmd::Agent(_)
            | Cmd::Server {
                cmd: server_cmd::ServerCmd::Run { .. }
            }
    );
    if !daemon {
        output::exit_quietly_on_closed_pipe();
    }
    malloc_tune::apply();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let result = rt.block_on(async move {
        match cli.cmd {
            Cmd::Server { cmd } => server_cmd::run(cmd).await,
            Cmd::Connect(c) => connect_cmd::connect(c).await,
            Cmd::Backup { cmd } => task_cmd::backup(cmd).await,
            Cmd::Run(c) => run::run_once(c).await,
            Cmd::Agent(c) => agent::agent(c).await,
            Cmd::Pause { task } => agent::set_paused(&task, true).await,
            Cmd::Resume {
                task,
                confirm_deletes,
            } => agent::resume(&task, confirm_deletes).await,
            Cmd::Drive { cmd } => drive_cmd::drive(cmd).await,
            Cmd::Cloud { cmd } => cloud_cmd::cloud(cmd).await,
            Cmd::Share { cmd } => share_cmd::run(cmd).await,
            Cmd::Task {
                cmd: TaskCmd::Set(c),
            } => drive_cmd::set(c).await,
            Cmd::Status { task, json } => status::status(task.as_deref(), json).await,
            Cmd::Log {
                task,
                lines,
                downloads,
                json,
            } => status::log(task.as_deref(), lines, downloads, json),
            Cmd::Versions { task, path, json } => explore::versions(&task, &path, json).await,
            Cmd::Ls(c) => explore::ls(c).await,
            Cmd::Restore(c) => explore::restore(c).await,
            Cmd::Download(c) => explore::download(c).await,
            Cmd::Generate(c) => generate_cmd::run(c, Cli::command()),
            Cmd::Debug { cmd } => debug_cmd::run(cmd),
        }
    });
    if let Err(e) = result {
        eprintln!("error: {}", output::escape(&format!("{e:#}")));
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    /// clap checks a command's definition only when that command is parsed: this checks
    /// every subcommand's at once (a `--version` clashing with a subcommand's own
    /// `--version` argument once broke `cairn download`).
    #[test]
    fn the_command_line_definition_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
