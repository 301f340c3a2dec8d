// Included by the build script of every kiln package that has one.

/// The fuzz workspace (host/fuzz) instruments every unit of kiln's packages for
/// libFuzzer, their build scripts too (cargo's per-package rustflags cannot
/// tell them apart); the script runs without libFuzzer, so the coverage hooks
/// its instrumented code calls are no-ops here.
#[cfg(kiln_fuzz)]
#[allow(unsafe_code)]
mod coverage_hooks {
    macro_rules! no_op {
        ($($name:ident($($arg:ty),*);)*) => {$(
            #[no_mangle]
            pub extern "C" fn $name($(_: $arg),*) {}
        )*};
    }
    no_op! {
        __sanitizer_cov_8bit_counters_init(*const u8, *const u8);
        __sanitizer_cov_pcs_init(*const usize, *const usize);
        __sanitizer_cov_trace_pc_indir(usize);
        __sanitizer_cov_trace_cmp1(u8, u8);
        __sanitizer_cov_trace_cmp2(u16, u16);
        __sanitizer_cov_trace_cmp4(u32, u32);
        __sanitizer_cov_trace_cmp8(u64, u64);
        __sanitizer_cov_trace_const_cmp1(u8, u8);
        __sanitizer_cov_trace_const_cmp2(u16, u16);
        __sanitizer_cov_trace_const_cmp4(u32, u32);
        __sanitizer_cov_trace_const_cmp8(u64, u64);
        __sanitizer_cov_trace_switch(u64, *const u64);
    }
}

