wecom_kf::endpoints!(relative_to = SourceFile, "undefined_message_type.toml");

fn main() {}
