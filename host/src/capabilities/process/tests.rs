use super::smuggling::SAFE_UPLOAD_PACK;
use super::*;

#[test]
fn trampolines_cannot_run_what_is_not_granted() {
    let g = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let granted = g(&["env", "git", "true"]);
    assert!(
        smuggled("env", &g(&["sh", "-c", "id"]), &granted)
            .unwrap()
            .contains("`env` would run `sh`")
    );
    assert!(
        smuggled("env", &g(&["-u", "true", "sh"]), &granted).is_some(),
        "-u takes a value"
    );
    assert!(smuggled("env", &g(&["-i", "A=1", "/bin/sh"]), &granted).is_some());
    assert!(smuggled("env", &g(&["-S", "sh -c id"]), &granted).is_some());
    assert_eq!(smuggled("env", &g(&["A=1", "true"]), &granted), None);
    assert!(smuggled("git", &g(&["-c", "core.sshCommand=sh", "fetch"]), &granted).is_some());
    assert_eq!(
        smuggled(
            "git",
            &g(&["-c", "protocol.file.allow=always", "fetch", SAFE_UPLOAD_PACK]),
            &granted
        ),
        None
    );
    assert!(smuggled("git", &g(&["-ccore.pager=sh", "log"]), &granted).is_some());
    assert!(smuggled("git", &g(&["ls-remote", "--upload-pack=sh", "x"]), &granted).is_some());
    assert_eq!(
        smuggled("git", &g(&["commit", "-c", "HEAD"]), &granted),
        None,
        "-c after the subcommand is its own"
    );
    assert!(
        smuggled(
            "git",
            &g(&["-C", ".", "-c", "core.fsmonitor=sh", "status"]),
            &granted
        )
        .is_some()
    );
    assert_eq!(smuggled("git", &g(&["add", "-u"]), &granted), None);
}
