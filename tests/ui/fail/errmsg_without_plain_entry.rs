wecom_kf::endpoints!(relative_to = SourceFile, "errmsg_without_plain_entry.toml");

fn main() {}
