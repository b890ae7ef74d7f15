wecom_kf::endpoints!(relative_to = SourceFile, "binary_response_not_idempotent.toml");

fn main() {}
