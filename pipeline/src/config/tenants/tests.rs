use super::*;

fn parse(text: &str) -> Result<Tenants, TenantsError> {
    Tenants::parse(Path::new("/etc/weir/tenants.toml"), text.into())
}

#[test]
fn sizes() {
    assert_eq!(parse_size("256MiB"), Ok(256 << 20));
    assert_eq!(parse_size("4096"), Ok(4096));
    assert_eq!(parse_size("1 GiB"), Ok(1 << 30));
    assert!(parse_size("12 parsecs").is_err());
    assert!(parse_size("MiB").is_err());
}

#[test]
fn a_tenant_with_everything() {
    let t = parse(
            r#"
[tenants.acme]
root = "acme"
max-runs = 2
max-stages = 3
allow = { exec = ["cargo"], network = ["crates.io"], secrets = ["TOKEN"], runtime = true }
limits = { memory = "64MiB", timeout = "10m", fuel = 1000, output = "64KiB", log = "1MiB", program-memory = "1GiB", processes = 64, disk = "2GiB" }
secrets = { file = "acme-secrets.toml" }
"#,
        )
        .unwrap();
    let acme = t.get(Some("acme")).unwrap();
    assert_eq!(acme.root.as_deref(), Some(Path::new("/etc/weir/acme")));
    assert_eq!(acme.max_runs, Some(2));
    assert_eq!(acme.limits.stage.memory_bytes, 64 << 20);
    assert_eq!(acme.limits.stage.fuel, Some(1000));
    assert_eq!(acme.limits.stage.output_bytes, 64 << 10);
    assert_eq!(acme.limits.max_timeout, Duration::from_secs(600));
    assert_eq!(acme.limits.stage.program_memory, Some(1 << 30));
    assert_eq!(acme.limits.stage.processes, Some(64));
    assert_eq!(acme.limits.stage.disk_bytes, Some(2 << 30));
    assert_eq!(
        acme.secrets,
        SecretSource::File {
            path: "/etc/weir/acme-secrets.toml".into()
        }
    );
    assert!(acme.allow.unwrap().runtime);
}

#[test]
fn unknown_tenants_and_missing_default_are_named() {
    let t = parse("[tenants.acme]\n").unwrap();
    let e = t.get(None).unwrap_err().to_string();
    assert!(e.contains("tenant `default` is not defined"), "{e}");
    assert!(matches!(t.get(Some("globex")), Err(TenantsError::Unknown { .. })));
    let acme = t.get(Some("acme")).unwrap();
    assert_eq!(
        acme.allow.unwrap().exec,
        Vec::<String>::new(),
        "a tenant allows nothing unless told"
    );
    assert_eq!(
        acme.secrets,
        SecretSource::Env {
            prefix: "WEIR_SECRET_ACME_".into()
        }
    );
}

#[test]
fn without_a_file_only_the_default_tenant_exists() {
    let t = Tenants::default();
    assert!(t.get(None).unwrap().allow.is_none());
    assert!(matches!(t.get(Some("acme")), Err(TenantsError::NoFile { .. })));
}

#[test]
fn bad_values_are_located() {
    let Err(TenantsError::Invalid { errors, .. }) = parse(
        "[tenants.acme]\nlimits = { memory = \"lots\", timeout = \"0s\", processes = 0 }\nmax-runs = 0\n",
    ) else {
        panic!("expected errors")
    };
    let text: Vec<String> = errors
        .iter()
        .map(|e| format!("{} {}", e.location, e.message))
        .collect();
    assert_eq!(text.len(), 4, "{text:?}");
    assert!(
        text[0].starts_with("/etc/weir/tenants.toml:2:21 limits.memory"),
        "{text:?}"
    );
    assert!(
        text.iter()
            .any(|t| t.ends_with("limits.processes of tenant `acme` cannot be 0: a program is a process")),
        "{text:?}"
    );
    let Err(TenantsError::Invalid { errors, .. }) = parse("[tenants.acme]\nallow = { programs = [] }\n")
    else {
        panic!("expected errors")
    };
    assert!(
        errors[0].message.contains("unknown field `programs`"),
        "{}",
        errors[0].message
    );
}

#[test]
fn unlimited_is_said_on_purpose_and_a_service_fills_what_is_unset() {
    let text = "[tenants.a]\nlimits = { disk = \"unlimited\" }\n[tenants.b]\n[tenants.c]\nlimits = { program-memory = \"1GiB\" }\n";
    let t = Tenants::parse(Path::new("tenants.toml"), text.to_string()).expect("parses");
    let a = t.get(Some("a")).expect("a").limits;
    assert!(a.unlimited.disk && !a.unlimited.program_memory);
    let served = a.for_service();
    assert_eq!(served.stage.disk_bytes, None, "unlimited on purpose stays so");
    assert_eq!(served.stage.program_memory, Some(SERVICE_PROGRAM_MEMORY));
    let b = t.get(Some("b")).expect("b").limits.for_service();
    assert_eq!(b.stage.disk_bytes, Some(SERVICE_DISK));
    let c = t.get(Some("c")).expect("c").limits.for_service();
    assert_eq!(c.stage.program_memory, Some(1 << 30), "what is set stays");
    let bad = Tenants::parse(
        Path::new("tenants.toml"),
        "[tenants.a]\nlimits = { memory = \"unlimited\" }\n".to_string(),
    );
    let e = format!("{:?}", bad.expect_err("memory cannot be unlimited"));
    assert!(e.contains("cannot be unlimited"), "{e}");
}
