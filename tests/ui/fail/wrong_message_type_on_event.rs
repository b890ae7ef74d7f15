// send_msg_on_event accepts text and msgmenu only: an image is refused at compile time.
async fn welcome(client: &wecom_kf::Client, code: String) -> Result<(), wecom_kf::Error> {
    client
        .send_msg_on_event(code, wecom_kf::types::Image::new("MEDIA_ID"))
        .await?;
    Ok(())
}

fn main() {}
