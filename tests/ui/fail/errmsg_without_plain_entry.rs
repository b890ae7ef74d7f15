wecom_kf::endpoints!(relative_to = SourceFile, "errmsg_without_plain_entry.toml", methods = inherent);

fn main() {}
