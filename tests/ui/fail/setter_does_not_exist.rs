// A text message has no title: there is no setter for it.
async fn reply(client: &wecom_kf::Client) -> Result<(), wecom_kf::Error> {
    client.send_text("wmUSER", "wkKFID", "hi").title("Hello").await?;
    Ok(())
}

fn main() {}
