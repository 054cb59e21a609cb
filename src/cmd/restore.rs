//! `mailferry restore --from DIR|FILE.mbox --to URL`: `migrate --from mbox:PATH`.

use crate::cli::RestoreArgs;
use crate::plan::Plan;

pub fn run(a: &RestoreArgs) -> anyhow::Result<i32> {
    super::migrate::run_plan(&Plan::restore(a)?)
}
