wecom_kf::endpoints!(relative_to = SourceFile, "file_outside_multipart.toml");

fn main() {}
