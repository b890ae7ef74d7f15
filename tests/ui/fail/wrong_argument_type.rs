// `limit` is a number, not a string.
async fn pull(client: &wecom_kf::Client) -> Result<(), wecom_kf::Error> {
    client.sync_msg("wkKFID").limit("1000").await?;
    Ok(())
}

fn main() {}
