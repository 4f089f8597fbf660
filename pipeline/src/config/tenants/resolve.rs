//! One tenant's `[tenants.NAME]` table, checked and resolved: its root,
//! its policy, its limits and its secret source.

use super::*;

pub(super) fn resolve(
    name: &str,
    spec: TenantSpec,
    base: &Path,
    source: &SourceFile,
    errors: &mut Vec<ConfigError>,
) -> Option<Tenant> {
    let before = errors.len();
    let absolute = |p: &str| {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            base.join(p)
        }
    };
    let root = spec.root.as_ref().map(|r| absolute(r.get_ref()));
    if let Some(a) = spec.allow.as_ref().filter(|a| !a.get_ref().publish.is_empty()) {
        errors.push(
            source
                .error(a.span(), format!("tenant `{name}` sets allow.publish, which is a stage's grant, not a bound"))
                .label("here")
                .help("remove it: a stage may publish only secrets it is granted, and allow.secrets bounds those"),
        );
    }
    let mut allow = spec.allow.map(|a| a.into_inner()).unwrap_or_default();
    allow.resolve_read(base);
    let mut limits = TenantLimits::default();
    if let Some(l) = spec.limits {
        let l = l.into_inner();
        let mut unlimited = Unlimited::default();
        let mut size = |v: &Option<Spanned<String>>, key: &str| -> Option<usize> {
            let v = v.as_ref()?;
            if v.get_ref() == "unlimited" {
                match key {
                    "disk" => unlimited.disk = true,
                    "program-memory" => unlimited.program_memory = true,
                    _ => errors.push(
                        source
                            .error(v.span(), format!("limits.{key} of tenant `{name}` cannot be unlimited"))
                            .help("only `disk` and `program-memory` can be \"unlimited\"; write a size such as \"256MiB\""),
                    ),
                }
                return None;
            }
            match parse_size(v.get_ref()) {
                Ok(n) if n > 0 => Some(n),
                Ok(_) => {
                    errors
                        .push(source.error(v.span(), format!("limits.{key} of tenant `{name}` cannot be 0")));
                    None
                }
                Err(why) => {
                    errors.push(
                        source
                            .error(v.span(), format!("limits.{key} of tenant `{name}`: {why}"))
                            .help("write a size such as \"512KiB\", \"256MiB\" or \"1GiB\" (or, for disk and program-memory, \"unlimited\")"),
                    );
                    None
                }
            }
        };
        if let Some(n) = size(&l.memory, "memory") {
            limits.stage.memory_bytes = n;
        }
        if let Some(n) = size(&l.output, "output") {
            limits.stage.output_bytes = n;
        }
        if let Some(n) = size(&l.log, "log") {
            limits.stage.log_bytes = n;
        }
        if let Some(n) = size(&l.program_memory, "program-memory") {
            limits.stage.program_memory = Some(n as u64);
        }
        if let Some(n) = size(&l.disk, "disk") {
            limits.stage.disk_bytes = Some(n as u64);
        }
        limits.unlimited = unlimited;

        if let Some(t) = &l.timeout {
            match crate::config::duration::parse_duration(t.get_ref()) {
                Ok(d) if !d.is_zero() => limits.max_timeout = d,
                Ok(_) => errors
                    .push(source.error(t.span(), format!("limits.timeout of tenant `{name}` cannot be 0"))),
                Err(why) => {
                    errors.push(source.error(t.span(), format!("limits.timeout of tenant `{name}`: {why}")))
                }
            }
        }
        if let Some(p) = &l.processes {
            if *p.get_ref() == 0 {
                errors.push(source.error(
                    p.span(),
                    format!("limits.processes of tenant `{name}` cannot be 0: a program is a process"),
                ));
            } else {
                limits.stage.processes = Some(*p.get_ref());
            }
        }
        if let Some(f) = &l.fuel {
            if *f.get_ref() == 0 {
                errors.push(source.error(f.span(), format!("limits.fuel of tenant `{name}` cannot be 0")));
            } else {
                limits.stage.fuel = Some(*f.get_ref());
            }
        }
    }
    let positive = |v: &Option<Spanned<u32>>, key: &str, errors: &mut Vec<ConfigError>| {
        let v = v.as_ref()?;
        if *v.get_ref() == 0 {
            errors.push(source.error(v.span(), format!("{key} of tenant `{name}` cannot be 0")));
            return None;
        }
        Some(*v.get_ref())
    };
    let max_runs = positive(&spec.max_runs, "max-runs", errors);
    let max_stages = positive(&spec.max_stages, "max-stages", errors);
    let secrets = match spec.secrets.map(Spanned::into_inner) {
        None => SecretSource::Env {
            prefix: format!("WEIR_SECRET_{}_", name.to_ascii_uppercase().replace('-', "_")),
        },
        Some(SecretsSpec {
            file: Some(f),
            env_prefix: None,
        }) => SecretSource::File {
            path: absolute(f.get_ref()),
        },
        Some(SecretsSpec {
            file: None,
            env_prefix: Some(p),
        }) => SecretSource::Env {
            prefix: p.into_inner(),
        },
        Some(SecretsSpec { file, env_prefix }) => {
            let span = file
                .map(|f| f.span())
                .or(env_prefix.map(|p| p.span()))
                .unwrap_or(0..0);
            errors.push(
                source
                    .error(span, format!("secrets of tenant `{name}` must name exactly one source"))
                    .help("secrets = { file = \"secrets.toml\" } or secrets = { env-prefix = \"ACME_SECRET_\" }"),
            );
            return None;
        }
    };
    // A tenant allows nothing it does not list: without the key, its
    // programs run inside bubblewrap or not at all.
    let sandbox = match &spec.sandbox {
        None => SandboxChoice::Required,
        Some(s) => SandboxChoice::parse(s.get_ref()).unwrap_or_else(|| {
            errors.push(
                source
                    .error(
                        s.span(),
                        format!("sandbox `{}` of tenant `{name}` is not a sandbox weir knows", s.get_ref()),
                    )
                    .help("use \"bubblewrap\" (the default: required), \"auto\" (bubblewrap where installed) or \"none\" (stages may opt out)"),
            );
            SandboxChoice::Required
        }),
    };
    if errors.len() > before {
        return None;
    }
    Some(Tenant {
        name: crate::names::TenantName::reported(name),
        root,
        allow: Some(allow),
        limits,
        max_runs,
        max_stages,
        secrets,
        sandbox,
        file: None,
    })
}

/// Why a text is not a size.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    /// No number first.
    #[error("`{0}` is not a size")]
    NotANumber(String),
    /// A unit weir does not know.
    #[error("`{0}` is not a size unit (use B, KiB, MiB or GiB)")]
    UnknownUnit(String),
    /// More bytes than this machine can count.
    #[error("`{0}` is too large")]
    TooLarge(String),
}

/// `"256MiB"`, `"1GiB"`, `"512KiB"`, `"4096"` (bytes): a size in bytes.
pub fn parse_size(text: &str) -> Result<usize, SizeError> {
    let s = text.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: usize = digits
        .parse()
        .map_err(|_| SizeError::NotANumber(text.to_string()))?;
    let scale: usize = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "K" | "KB" => 1 << 10,
        "MiB" | "M" | "MB" => 1 << 20,
        "GiB" | "G" | "GB" => 1 << 30,
        other => return Err(SizeError::UnknownUnit(other.to_string())),
    };
    n.checked_mul(scale)
        .ok_or_else(|| SizeError::TooLarge(text.to_string()))
}
