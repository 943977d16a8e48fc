//! Graph emulator (being written).
