wecom_kf::endpoints!(relative_to = SourceFile, "not_an_identifier.toml");

fn main() {}
