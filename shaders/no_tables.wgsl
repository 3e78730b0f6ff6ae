// share_tables for weight types whose products need no table in workgroup memory (all but the IQ4s, whose
// quant_iq4.wgsl has the real one): a weight library's companion, so that every product calls it alike.

fn share_tables(lid: u32, n: u32) {}
