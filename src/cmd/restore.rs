//! `mailferry restore --from DIR|FILE.mbox --to URL`: `migrate --from mbox:PATH`.

use crate::cli::RestoreArgs;

pub fn run(a: &RestoreArgs) -> anyhow::Result<i32> {
    let from = format!("mbox:{}", a.from.display());
    super::migrate::copy(
        &from,
        crate::plan::Auth::default(),
        &a.to,
        crate::plan::Auth {
            password_file: a.to_password_file.as_deref(),
            admin: a.to_admin.as_deref(),
            token_cmd: a.to_token_cmd.as_deref(),
            oauth2: a.to_oauth2.as_deref(),
        },
        &a.job,
        &a.copy,
        a.labels_as_folders,
    )
}
