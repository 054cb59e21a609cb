//! `mailferry restore --from DIR|FILE.mbox --to URL`: `migrate --from mbox:PATH`.

use crate::cli::RestoreArgs;

pub fn run(a: &RestoreArgs) -> anyhow::Result<i32> {
    let from = format!("mbox:{}", a.from.display());
    super::migrate::copy(
        &from,
        None,
        &a.to,
        a.to_password_file.as_deref(),
        &a.job,
        &a.copy,
        a.labels_as_folders,
    )
}
