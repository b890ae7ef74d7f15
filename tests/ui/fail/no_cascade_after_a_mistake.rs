// A mistake in the file is the only error: the modules and the trait the macro generates
// still exist (empty), so the code that uses them adds no errors of its own.
wecom_kf::endpoints!(relative_to = SourceFile, "no_cascade_after_a_mistake.toml");

#[allow(unused_imports)]
use self::{builders as _, types as _};

fn takes_the_trait<T: ClientExt>() {}

fn main() {
    takes_the_trait::<wecom_kf::Client>();
}
