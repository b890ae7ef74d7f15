wecom_kf::endpoints!(relative_to = SourceFile, "multipart_without_file.toml");

fn main() {}
