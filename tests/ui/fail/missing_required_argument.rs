// send_text needs the customer, the kf account and the text: forgetting one doesn't compile.
async fn reply(client: &wecom_kf::Client) -> Result<(), wecom_kf::Error> {
    client.send_text("wmUSER", "wkKFID").await?;
    Ok(())
}

fn main() {}
