//! The WAL records of transactions and their exact bytes.
