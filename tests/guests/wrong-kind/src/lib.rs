use weir_sdk::{Action, Context, Failure, Manifest, Plugin, RolloutState, Strategy};

struct WrongKind;

impl Plugin for WrongKind {
    fn manifest() -> Manifest {
        weir_sdk::package_manifest!(Strategy)
    }
}

impl Strategy for WrongKind {
    fn next(_ctx: Context, _state: RolloutState) -> Result<Action, Failure> {
        Ok(Action::Promote)
    }
}

weir_sdk::export_strategy!(WrongKind);
