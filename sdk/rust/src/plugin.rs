//! The `Plugin` trait and the glue behind `export_plugin!`.

use crate::{Error, Inputs, Metadata, Parameter, Params, Tensor};

/// What a kiln plugin implements. Export it with [`export_plugin!`](crate::export_plugin).
///
/// Both functions are associated functions (no `self`): a component has no
/// object to call them on. Keep per-instance state in statics if you need
/// it (see the crate docs on instances).
pub trait Plugin {
    /// The plugin's name, version and declared inputs and outputs. kiln
    /// calls it once when it loads the model and checks that every tensor
    /// `config.pbtxt` declares is declared here with the same datatype.
    /// `-1` in `dims` is a variable dimension.
    fn metadata() -> Metadata;

    /// One request. `inputs` have been checked against `config.pbtxt`;
    /// return every output `config.pbtxt` declares (declared datatype, shape
    /// matching its dims), each once, and only names `metadata` declares
    /// (kiln drops declared ones the config does not use; INTERNAL otherwise).
    fn process(inputs: Inputs, params: &Params) -> Result<Vec<Tensor>, Error>;
}

/// Sends panic messages to kiln's log (the default hook's stderr output
/// goes nowhere in kiln), then lets the component abort.
fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let message = info
                .payload()
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| info.payload().downcast_ref::<String>().map(String::as_str))
                .unwrap_or("(non-string panic payload)");
            let location = info
                .location()
                .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
                .unwrap_or_default();
            crate::log::with_fields(
                crate::log::Level::Error,
                &format!("plugin panicked: {message}"),
                &[("location", &location)],
            );
        }));
    });
}

/// `processor.metadata` for `P` (called by the code `export_plugin!` generates).
pub fn metadata<P: Plugin>() -> Metadata {
    install_panic_hook();
    P::metadata()
}

/// `processor.process` for `P` (called by the code `export_plugin!` generates).
pub fn process<P: Plugin>(
    inputs: Vec<Tensor>,
    parameters: Vec<Parameter>,
) -> Result<Vec<Tensor>, Error> {
    install_panic_hook();
    P::process(Inputs::new(inputs), &Params::new(parameters))
}

/// Exports a type implementing [`Plugin`] as the component's
/// `kiln:plugin/processor` interface. Use it once, in the plugin's
/// `cdylib` crate:
///
/// ```ignore
/// struct MyPlugin;
/// impl kiln_plugin::Plugin for MyPlugin { /* ... */ }
/// kiln_plugin::export_plugin!(MyPlugin);
/// ```
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        const _: () = {
            struct __KilnPluginExport;

            impl $crate::bindings::exports::kiln::plugin::processor::Guest for __KilnPluginExport {
                fn metadata() -> $crate::Metadata {
                    $crate::__private::metadata::<$plugin>()
                }

                fn process(
                    inputs: ::std::vec::Vec<$crate::Tensor>,
                    parameters: ::std::vec::Vec<$crate::Parameter>,
                ) -> ::core::result::Result<::std::vec::Vec<$crate::Tensor>, $crate::Error>
                {
                    $crate::__private::process::<$plugin>(inputs, parameters)
                }
            }

    $crate::bindings::__export_world!(__KilnPluginExport with_types_in $crate::bindings);
        };
    };
}
