//! Starting a run: a fresh one from a pipeline file, or a resumed one from
//! the history. Either way the result is a [`Session`] that is planned,
//! checked against its tenant, recorded, and ready to run; nothing is
//! printed, every refusal is a [`SessionError`].

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::prepare::{
    EnvironmentProblems, PrepareError, Prepared, engine_for, prepare_layered, sandbox_available,
    within_tenant,
};
use super::state::{run_dir, state_dir, state_outside};
use super::{Session, SessionError};
use crate::config::tenants::{Tenant, Tenants};
use crate::events::{Event, Reused};
use crate::plan::RunFacts;
use crate::plan::environments::{self, Resolved};
use crate::run::Reuse;
use crate::store::recorder::{NewRun, Recorder};
use crate::store::{Store, StoreError};

/// The pipeline file when none is named.
pub const DEFAULT_PIPELINE: &str = "pipeline.toml";

/// What a caller asks of a fresh run.
#[derive(Debug, Clone, Default)]
pub struct RunRequest {
    /// The pipeline file (default: `pipeline.toml`).
    pub pipeline: Option<PathBuf>,
    /// The branch being built (default: read from git around the file).
    pub branch: Option<String>,
    /// The environment the run targets.
    pub environment: Option<String>,
    /// Most stages at once (default: the number of CPUs).
    pub jobs: Option<usize>,
    /// Start no new stage once one has failed.
    pub fail_fast: bool,
    /// Tags pointing at the commit (default: `git tag --points-at HEAD`).
    pub tags: Vec<String>,
    /// The workspace to use instead of a fresh one.
    pub workspace: Option<PathBuf>,
    /// The tenant (default: `default`).
    pub tenant: Option<String>,
    /// The tenants file (default: `$WEIR_TENANTS`).
    pub tenants: Option<PathBuf>,
    /// The run's id, when the caller reserved one (a queued run of
    /// `weir serve`, recorded `queued` under this id); default: a new one.
    pub run_id: Option<String>,
    /// The run's code is not trusted with the tenant's secrets or with
    /// deploys (a pull request from a fork): stages that read a secret or
    /// deploy are left out, with the reason in their `stage_skipped`.
    pub untrusted: bool,
    /// The code the run builds, checked out by the caller (`weir serve`):
    /// the run's stages may be granted reads of it whatever the tenant's
    /// `allow.read` says.
    pub source: Option<PathBuf>,
    /// The commit being built, when the caller checked it out (default:
    /// read from git around the file).
    pub commit: Option<String>,
    /// weir's own variables no stage may `inherit-env` (the server's
    /// webhook secrets and status tokens); a name ending in `*` is a
    /// prefix. Every tenant's secret prefix is withheld as well whenever
    /// a tenants file is in use.
    pub withheld_env: Vec<String>,
    /// The tenant as the caller resolved it, instead of reading
    /// `tenant` from `tenants` (a `weir worker`: the server's policy, its
    /// own root, secrets asked of the server).
    pub tenant_given: Option<Tenant>,
    /// The run was begun elsewhere (a worker that died): the stages that
    /// succeeded there keep their results, as in a resume.
    pub continued: Option<Continued>,
    /// `weir serve` started it, on a host many share: limits its tenant
    /// leaves unset get the service's finite defaults
    /// ([`TenantLimits::for_service`](weir_pipeline::config::tenants::TenantLimits::for_service)).
    pub service: bool,
}

/// Where a run begun elsewhere had got to.
#[derive(Debug, Clone, Default)]
pub struct Continued {
    /// How many times it was taken up again before, this one included.
    pub resumes: u32,
    /// Its stages that succeeded: (name, `stage_finished` event).
    pub succeeded: Vec<(String, String)>,
}

/// What a caller may change when resuming a run; everything else is as
/// recorded.
#[derive(Debug, Clone, Default)]
pub struct ResumeRequest {
    /// Most stages at once (default: as recorded).
    pub jobs: Option<usize>,
    /// Start no new stage once one has failed (or as recorded).
    pub fail_fast: bool,
    /// The tenants file to find the run's tenant in.
    pub tenants: Option<PathBuf>,
    /// The code the run builds, as for [`RunRequest::source`].
    pub source: Option<PathBuf>,
    /// As for [`RunRequest::withheld_env`].
    pub withheld_env: Vec<String>,
    /// As for [`RunRequest::service`].
    pub service: bool,
}

/// The stage cache's and replay records' own connection to the history.
fn history() -> Result<crate::execute::History, SessionError> {
    Ok(crate::execute::History {
        store: std::sync::Arc::new(std::sync::Mutex::new(Store::open(&state_dir())?)),
        blobs: crate::blobs::Blobs::new(state_dir().join(crate::blobs::BLOB_DIR)),
    })
}

fn tenant(file: Option<&Path>, name: Option<&str>, source: Option<&Path>) -> Result<Tenant, SessionError> {
    let mut tenant = Tenants::load(file)
        .and_then(|t| t.get(name))
        .map_err(PrepareError::from)?;
    // The code the caller checked out for the run is the tenant's own
    // (a tenant without `allow` is unrestricted already).
    if let (Some(source), Some(allow)) = (source, tenant.allow.as_mut()) {
        allow.read.push(source.to_path_buf());
    }
    Ok(tenant)
}

/// A fresh run of `request`, or with `focus`, the run `weir dev` makes.
pub async fn fresh(request: &RunRequest, focus: Option<&Focus>) -> Result<Session, SessionError> {
    let pipeline = request
        .pipeline
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_PIPELINE));
    // A caller that checked the commit out says which it is; else git is
    // asked about the file's repository.
    let git = match &request.commit {
        Some(commit) => GitFacts {
            commit: Some(commit.clone()),
            tags: Vec::new(),
        },
        None => detect_git(&pipeline),
    };
    let options = Options {
        branch: request.branch.clone().or_else(|| detect_branch(&pipeline)),
        environment: request.environment.clone(),
        jobs: request.jobs,
        fail_fast: request.fail_fast,
        tags: if request.tags.is_empty() {
            git.tags
        } else {
            request.tags.clone()
        },
        commit: git.commit,
        dev: focus.map(|f| f.stage.clone()),
        untrusted: request.untrusted,
    };
    let tenant = match &request.tenant_given {
        Some(given) => {
            let mut given = given.clone();
            if let (Some(source), Some(allow)) = (&request.source, given.allow.as_mut()) {
                allow.read.push(source.clone());
            }
            given
        }
        None => tenant(
            request.tenants.as_deref(),
            request.tenant.as_deref(),
            request.source.as_deref(),
        )?,
    };
    let tenant = if request.service {
        let mut tenant = tenant;
        tenant.limits = tenant.limits.for_service();
        tenant
    } else {
        tenant
    };
    // Environments are laid over their stages, and the result checked
    // against the tenant's policy, before the plugins check them and
    // before anything is recorded: a run that cannot have its variables,
    // secrets or branch rules, or asks for more than its tenant allows,
    // does not start.
    let withheld = withheld_env(&request.withheld_env, request.tenants.as_deref());
    let mut resolved = Resolved::default();
    let mut left_out = Vec::new();
    let mut layer = |plan: &mut crate::plan::Plan| {
        if let Some(focus) = focus {
            focus_plan(plan, focus);
        }
        resolved = resolve_environments(plan, &options, &tenant)?;
        if options.untrusted {
            left_out = plan.without_trusted_stages();
        }
        refuse_withheld(plan, &tenant, &withheld)?;
        within_tenant(plan, &tenant)
    };
    let engine = engine_for(&tenant);
    let workspace_arg = request
        .workspace
        .clone()
        .or_else(|| focus.and_then(|f| f.from.as_ref()).map(|r| r.workspace.clone()));
    let prepared = prepare_layered(&pipeline, None, workspace_arg.as_deref(), &engine, &mut layer).await?;
    sandbox_available(&prepared, &tenant)?;
    // Recorded as resolved, so a resume and the report see the same.
    let options = Options {
        environment: resolved.environment.clone(),
        ..options
    };
    let run_id = request.run_id.clone().unwrap_or_else(new_run_id);
    let workspace =
        workspace_dir(workspace_arg.as_deref(), &run_id, &tenant).map_err(SessionError::Workspace)?;

    // The run history records every event; a history that cannot be opened
    // stops the run before anything happens (a run must not go unrecorded).
    let history = history()?;
    let plan = &prepared.plan;
    let opened = NewRun {
        id: run_id.clone(),
        pipeline: plan.name.clone(),
        pipeline_file: std::path::absolute(&pipeline)
            .unwrap_or_else(|_| pipeline.clone())
            .display()
            .to_string(),
        tenant: tenant.name.to_string(),
        workspace: workspace.display().to_string(),
        stages: plan.stages.iter().map(|s| s.name.to_string()).collect(),
        pipeline_text: plan.source.text().to_string(),
        options: serde_json::to_string(&options).unwrap_or_default(),
        branch: options.branch.clone(),
        commit: options.commit.clone(),
    };
    let recorder = Store::open(&state_dir()).and_then(|store| Recorder::start(store, &opened))?;
    let reuse = match focus.and_then(|f| f.from.as_ref().map(|r| (f, r))) {
        Some((focus, from)) => reused(
            &prepared,
            &from.succeeded,
            Some(&focus.stage),
            Reused::Dev { run: from.id.clone() },
        ),
        None => match &request.continued {
            Some(continued) => reused(&prepared, &continued.succeeded, None, Reused::Resume),
            None => Vec::new(),
        },
    };
    Ok(Session {
        history,
        prepared,
        run_id,
        workspace,
        tenant,
        options,
        recorder,
        resume: request.continued.as_ref().map_or(0, |c| c.resumes),
        reuse,
        resolved,
        left_out,
        opened: Some(opened),
    })
}

/// Run `id` again from where it stopped: the stages that succeeded keep
/// their results; the others run again in the same workspace, with the
/// pipeline and options recorded with the run.
pub async fn resume(id: &str, request: &ResumeRequest) -> Result<Session, SessionError> {
    let refuse = |why: String| SessionError::NotResumable {
        id: id.to_string(),
        why,
    };
    if !state_dir().join(crate::store::DB_FILE).is_file() {
        return Err(StoreError::NoSuchRun(id.to_string()).into());
    }
    let store = Store::open(&state_dir())?;
    let recorded = store.resume_info(id)?;
    match recorded.status.as_str() {
        "running" => {
            return Err(refuse(
                "is still running (its weir process is alive); it can be resumed once it ends".into(),
            ));
        }
        "succeeded" => return Err(refuse("succeeded; there is nothing to resume".into())),
        _ => {}
    }
    let Some(text) = recorded.pipeline_text else {
        return Err(refuse(
            "was recorded by an older weir without its pipeline, so it cannot be resumed".into(),
        ));
    };
    let options: Options = recorded
        .options
        .as_deref()
        .and_then(|o| serde_json::from_str(o).ok())
        .unwrap_or_default();
    if let Some(stage) = &options.dev {
        return Err(refuse(format!(
            "was a `weir dev` round of stage `{stage}` (a changed plugin on part of the pipeline), so it cannot be resumed; run `weir dev` again"
        )));
    }
    let workspace = PathBuf::from(&recorded.workspace);
    if !workspace.is_dir() {
        return Err(refuse(format!(
            "cannot be resumed: its workspace {} is gone",
            workspace.display()
        )));
    }
    if let Err(why) = state_outside(&workspace) {
        return Err(refuse(format!("cannot be resumed: {why}")));
    }
    let path = PathBuf::from(&recorded.pipeline_file);
    let mut tenant = tenant(
        request.tenants.as_deref(),
        Some(&recorded.tenant),
        request.source.as_deref(),
    )?;
    if request.service {
        tenant.limits = tenant.limits.for_service();
    }
    let withheld = withheld_env(&request.withheld_env, request.tenants.as_deref());
    let mut resolved = Resolved::default();
    let mut left_out = Vec::new();
    let mut layer = |plan: &mut crate::plan::Plan| {
        resolved = resolve_environments(plan, &options, &tenant)?;
        if options.untrusted {
            left_out = plan.without_trusted_stages();
        }
        refuse_withheld(plan, &tenant, &withheld)?;
        within_tenant(plan, &tenant)
    };
    let engine = engine_for(&tenant);
    let prepared = prepare_layered(&path, Some(text), Some(&workspace), &engine, &mut layer).await?;
    sandbox_available(&prepared, &tenant)?;
    let reuse = reused(&prepared, &recorded.succeeded, None, Reused::Resume);
    let rerun: Vec<String> = prepared
        .plan
        .stages
        .iter()
        .enumerate()
        .filter(|(i, _)| !reuse.iter().any(|r| r.stage == *i))
        .map(|(_, s)| s.name.to_string())
        .collect();
    let history = history()?;
    let recorder = Recorder::resume(store, id, &rerun)?;
    let options = Options {
        jobs: request.jobs.or(options.jobs),
        fail_fast: request.fail_fast || options.fail_fast,
        ..options
    };
    Ok(Session {
        history,
        prepared,
        run_id: id.to_string(),
        workspace,
        tenant,
        options,
        recorder,
        resume: recorded.resumes + 1,
        reuse,
        resolved,
        left_out,
        opened: None,
    })
}

/// The stages of `prepared` that keep an earlier run's results: those in
/// `succeeded` (name, `stage_finished` event), but `except`.
fn reused(
    prepared: &Prepared,
    succeeded: &[(String, String)],
    except: Option<&str>,
    how: Reused,
) -> Vec<Reuse> {
    let mut reuse = Vec::new();
    for (name, body) in succeeded {
        if except == Some(name.as_str()) {
            continue;
        }
        let Some(stage) = prepared.plan.index_of(name) else {
            continue;
        };
        let Ok(mut finished) = serde_json::from_str::<Event>(body) else {
            continue;
        };
        let Event::StageFinished {
            plugin,
            outputs,
            reused,
            ..
        } = &mut finished
        else {
            continue;
        };
        if plugin.is_none() {
            *plugin = prepared.plugins.get(stage).map(|p| p.info.label());
        }
        *reused = Some(Box::new(how.clone()));
        let outputs = outputs.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        reuse.push(Reuse {
            stage,
            outputs,
            finished,
        });
    }
    reuse
}

/// How a run was started, recorded with it so `--resume` runs it the same
/// way.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Options {
    pub(crate) branch: Option<String>,
    pub(crate) environment: Option<String>,
    pub(crate) jobs: Option<usize>,
    pub(crate) fail_fast: bool,
    /// Tags pointing at the commit being built.
    #[serde(default)]
    tags: Vec<String>,
    /// The commit being built.
    #[serde(default)]
    commit: Option<String>,
    /// The stage a `weir dev` round ran; such a run ran a changed plan
    /// and is not resumed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dev: Option<String>,
    /// Code not trusted with secrets or deploys (a fork's pull request):
    /// such stages are left out, on a resume too.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    untrusted: bool,
}

/// The variables no stage may inherit: `asked`, and with a tenants file,
/// every tenant's secret prefix (`WEIR_SECRET_*`, `ACME_*`): one tenant's
/// stage must not copy another's secrets out of weir's environment.
fn withheld_env(asked: &[String], tenants: Option<&Path>) -> Vec<String> {
    let mut withheld = asked.to_vec();
    let Ok(all) = Tenants::load(tenants) else {
        return withheld;
    };
    let mut from_file = false;
    for t in all.all().filter(|t| t.file.is_some()) {
        from_file = true;
        if let crate::config::tenants::SecretSource::Env { prefix } = &t.secrets {
            withheld.push(format!("{prefix}*"));
        }
    }
    if from_file {
        withheld.push(format!("{}*", crate::config::tenants::DEFAULT_SECRET_PREFIX));
    }
    withheld
}

/// Refuse stages (or their environments) that inherit a withheld variable.
fn refuse_withheld(
    plan: &crate::plan::Plan,
    tenant: &Tenant,
    withheld: &[String],
) -> Result<(), PrepareError> {
    let matches = |name: &str| {
        withheld.iter().any(|w| match w.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => w == name,
        })
    };
    let mut errors = Vec::new();
    for stage in &plan.stages {
        let from_env = stage
            .environment
            .as_ref()
            .and_then(|e| plan.environments.get(e))
            .map(|e| e.inherit_env.clone())
            .unwrap_or_default();
        for name in stage.inherited.iter().chain(&from_env).filter(|n| matches(n)) {
            let span = stage
                .env_spans
                .iter()
                .find(|(k, _)| k == name)
                .map_or(stage.uses_span.clone(), |(_, s)| s.clone());
            errors.push(
                plan.source
                    .error(
                        span,
                        format!(
                            "stage `{}` inherits `{name}` from weir's environment, which holds the server's or another tenant's secrets",
                            stage.name
                        ),
                    )
                    .help("give the stage what it needs as a secret (`allow.secrets`, or an environment's `secrets`) instead of inheriting it"),
            );
        }
    }
    if errors.is_empty() {
        return Ok(());
    }
    Err(super::prepare::BeyondTenant {
        path: plan.source.path().to_path_buf(),
        tenant: tenant.name.to_string(),
        errors,
    }
    .into())
}

/// Lay the run's environments over the plan and check its branch rules;
/// every problem is reported, not just the first.
fn resolve_environments(
    plan: &mut crate::plan::Plan,
    options: &Options,
    tenant: &Tenant,
) -> Result<Resolved, PrepareError> {
    environments::resolve(plan, options.environment.as_deref(), &|name| {
        tenant.secrets.get(name)
    })
    .and_then(|resolved| {
        let facts = RunFacts {
            branch: options.branch.clone(),
            environment: resolved.environment.clone(),
        };
        let errors = environments::check_refs(plan, &facts, &options.tags);
        if errors.is_empty() {
            Ok(resolved)
        } else {
            Err(errors)
        }
    })
    .map_err(|errors| {
        EnvironmentProblems {
            path: plan.source.path().to_path_buf(),
            problems: errors.iter().map(ToString::to_string).collect(),
        }
        .into()
    })
}

/// What `weir dev` changes about a run: one stage, with a plugin just
/// built, its upstream stages' results taken from an earlier run.
pub struct Focus {
    /// The stage to run.
    pub stage: String,
    /// The `[plugins.NAME]` it uses.
    pub plugin: String,
    /// The component to use for that plugin instead (not pinned).
    pub component: PathBuf,
    /// The run whose workspace and results the upstream stages reuse;
    /// `None` runs the whole pipeline.
    pub from: Option<FromRun>,
}

/// An earlier run a focused run takes its inputs from.
pub struct FromRun {
    /// Its id.
    pub id: String,
    /// Its workspace.
    pub workspace: PathBuf,
    /// Its stages that succeeded, with their `stage_finished` events.
    pub succeeded: Vec<(String, String)>,
}

/// `focus` laid over `plan`: its plugin is the component just built, and
/// with an earlier run to take inputs from, only the stage and its
/// upstream are left.
fn focus_plan(plan: &mut crate::plan::Plan, focus: &Focus) {
    use crate::plan::PluginRef;
    let swap = |plugin: &mut PluginRef| {
        if let PluginRef::File { name, .. } = plugin
            && *name == focus.plugin
        {
            *plugin = PluginRef::File {
                name: name.clone(),
                path: focus.component.clone(),
                sha256: None,
            };
        }
    };
    for stage in &mut plan.stages {
        swap(&mut stage.plugin);
        if let Some(rollout) = &mut stage.rollout {
            swap(&mut rollout.strategy.plugin);
            for check in &mut rollout.checks {
                swap(&mut check.plugin);
            }
        }
    }
    if focus.from.is_some()
        && let Some(index) = plan.index_of(&focus.stage)
    {
        plan.focus_on(index);
    }
}

/// `20261121-223501-4f2a91`: sortable, readable, and unique: the time,
/// then 24 random bits (a server queues thousands of runs a second).
pub fn new_run_id() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    let (y, mo, d) = crate::report::style::civil_from_days((secs / 86_400) as i64);
    let (h, mi, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    let mut random = [0u8; 3];
    if getrandom::fill(&mut random).is_err() {
        // No system randomness: the clock's nanoseconds and the process.
        use std::hash::{BuildHasher, Hasher};
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u128(now.as_nanos());
        hasher.write_u32(std::process::id());
        random.copy_from_slice(&hasher.finish().to_le_bytes()[..3]);
    }
    format!("{y:04}{mo:02}{d:02}-{h:02}{mi:02}{s:02}-{}", hex::encode(random))
}

/// The run's workspace: the one given, else a fresh directory under the
/// tenant's root (`ROOT/runs/RUN/workspace`) or, for a tenant without a
/// root, under `.weir/runs/RUN`. A tenant with a root may not use a
/// workspace outside it.
fn workspace_dir(given: Option<&Path>, run_id: &str, tenant: &Tenant) -> std::io::Result<PathBuf> {
    let dir = match (given, &tenant.root) {
        (Some(d), _) => d.to_path_buf(),
        (None, Some(root)) => root.join("runs").join(run_id).join("workspace"),
        (None, None) => run_dir(run_id).join("workspace"),
    };
    let cannot = |e: std::io::Error| {
        std::io::Error::other(format!("cannot create the workspace {}: {e}", dir.display()))
    };
    std::fs::create_dir_all(&dir).map_err(cannot)?;
    let dir = dir.canonicalize().map_err(cannot)?;
    state_outside(&dir).map_err(std::io::Error::other)?;
    if let Some(root) = &tenant.root {
        let root = root.canonicalize()?;
        if !dir.starts_with(&root) {
            return Err(std::io::Error::other(format!(
                "{} is outside the root of tenant `{}` ({}); a tenant's runs live under its root",
                dir.display(),
                tenant.name,
                root.display()
            )));
        }
    }
    Ok(dir)
}

/// What git says about the commit around the pipeline file.
#[derive(Debug, Default)]
struct GitFacts {
    commit: Option<String>,
    tags: Vec<String>,
}

/// The commit checked out around `pipeline` and the tags pointing at it,
/// when git is installed and the file is in a repository.
fn detect_git(pipeline: &Path) -> GitFacts {
    let Some(dir) = pipeline
        .canonicalize()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
    else {
        return GitFacts::default();
    };
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(&dir)
            .args(args)
            .stderr(std::process::Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    GitFacts {
        commit: git(&["rev-parse", "HEAD"]).filter(|c| !c.is_empty()),
        tags: git(&["tag", "--points-at", "HEAD"])
            .map(|t| t.lines().map(str::to_string).collect())
            .unwrap_or_default(),
    }
}

/// The branch checked out in the git repository around `pipeline`, read
/// from `.git/HEAD` (no git needed). `None` when detached or not in git.
fn detect_branch(pipeline: &Path) -> Option<String> {
    let start = pipeline.canonicalize().ok()?;
    let mut dir = start.parent()?;
    loop {
        let head = dir.join(".git").join("HEAD");
        if head.is_file() {
            let text = std::fs::read_to_string(head).ok()?;
            return text.trim().strip_prefix("ref: refs/heads/").map(str::to_string);
        }
        dir = dir.parent()?;
    }
}
