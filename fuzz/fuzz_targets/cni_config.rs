//! The CNI plugin's stdin: the network configuration the runtime hands `ekube-cni`, and the
//! version sniffed from it for error replies.

#![no_main]

use ekube_cni::config::{NetConf, sniff_version};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = sniff_version(data);
    if let Ok(conf) = NetConf::parse(data) {
        let _ = conf.version();
    }
});
