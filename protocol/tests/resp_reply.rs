//! RESP2 and RESP3 encodings of every reply type, including the RESP3 to
//! RESP2 mappings Redis uses (bytes compared with what redis-server 7.0.15
//! sent for HELLO, CONFIG GET and COMMAND INFO where such a reply exists).

use jube_protocol::resp::reply::format_double;
use jube_protocol::resp::{Reply, RespVersion};

fn both(reply: &Reply) -> (String, String) {
    let text = |version| String::from_utf8(reply.to_bytes(version)).expect("utf-8");
    (text(RespVersion::Resp2), text(RespVersion::Resp3))
}

#[test]
fn encodings_of_each_type() {
    let cases: Vec<(Reply, &str, &str)> = vec![
        (Reply::OK, "+OK\r\n", "+OK\r\n"),
        (
            Reply::error("ERR syntax error"),
            "-ERR syntax error\r\n",
            "-ERR syntax error\r\n",
        ),
        (Reply::error("ERR a\r\nb"), "-ERR a  b\r\n", "-ERR a  b\r\n"),
        (Reply::Integer(-42), ":-42\r\n", ":-42\r\n"),
        (Reply::bulk("hi"), "$2\r\nhi\r\n", "$2\r\nhi\r\n"),
        (Reply::bulk(""), "$0\r\n\r\n", "$0\r\n\r\n"),
        (Reply::Bulk(None), "$-1\r\n", "_\r\n"),
        (Reply::Null, "$-1\r\n", "_\r\n"),
        (Reply::Array(None), "*-1\r\n", "_\r\n"),
        (Reply::Array(Some(vec![])), "*0\r\n", "*0\r\n"),
        (
            Reply::bulks(["a", "b"]),
            "*2\r\n$1\r\na\r\n$1\r\nb\r\n",
            "*2\r\n$1\r\na\r\n$1\r\nb\r\n",
        ),
        (Reply::Double(1.5), "$3\r\n1.5\r\n", ",1.5\r\n"),
        (Reply::Double(f64::INFINITY), "$3\r\ninf\r\n", ",inf\r\n"),
        (Reply::Boolean(true), ":1\r\n", "#t\r\n"),
        (Reply::Boolean(false), ":0\r\n", "#f\r\n"),
        (
            Reply::Map(vec![
                (Reply::bulk("save"), Reply::bulk("")),
                (Reply::bulk("appendonly"), Reply::bulk("no")),
            ]),
            "*4\r\n$4\r\nsave\r\n$0\r\n\r\n$10\r\nappendonly\r\n$2\r\nno\r\n",
            "%2\r\n$4\r\nsave\r\n$0\r\n\r\n$10\r\nappendonly\r\n$2\r\nno\r\n",
        ),
        (
            Reply::Set(vec![
                Reply::Simple("write".into()),
                Reply::Simple("denyoom".into()),
            ]),
            "*2\r\n+write\r\n+denyoom\r\n",
            "~2\r\n+write\r\n+denyoom\r\n",
        ),
        (
            Reply::Verbatim {
                format: *b"txt",
                text: b"a=1".to_vec(),
            },
            "$3\r\na=1\r\n",
            "=7\r\ntxt:a=1\r\n",
        ),
        (
            Reply::Push(vec![Reply::Integer(1)]),
            "*1\r\n:1\r\n",
            ">1\r\n:1\r\n",
        ),
        (
            Reply::Array(Some(vec![Reply::Null, Reply::Map(vec![])])),
            "*2\r\n$-1\r\n*0\r\n",
            "*2\r\n_\r\n%0\r\n",
        ),
    ];
    for (reply, resp2, resp3) in cases {
        assert_eq!(
            both(&reply),
            (resp2.to_owned(), resp3.to_owned()),
            "{reply:?}"
        );
    }
}

#[test]
fn double_formatting() {
    let cases: &[(f64, &str)] = &[
        (0.0, "0"),
        (-0.0, "-0"),
        (1.0, "1"),
        (10.5, "10.5"),
        (0.1, "0.1"),
        (-2.25, "-2.25"),
        (3000.0, "3000"),
        (1e16, "10000000000000000"),
        (1e17, "1e+17"),
        (1.5e300, "1.5e+300"),
        (0.0001, "0.0001"),
        (0.00001, "1e-05"),
        (1.234e-7, "1.234e-07"),
        (f64::NEG_INFINITY, "-inf"),
        (f64::NAN, "nan"),
    ];
    for (value, text) in cases {
        assert_eq!(format_double(*value), *text, "{value:e}");
    }
}

#[test]
fn encoded_size_max_bounds_every_encoding() {
    let nested = Reply::Array(Some(vec![
        Reply::bulk(vec![b'x'; 100_000]),
        Reply::Map(vec![(
            Reply::bulk("k"),
            Reply::Double(-1.234_567_890_123_456_7e-300),
        )]),
        Reply::Set(vec![
            Reply::Integer(i64::MIN),
            Reply::Boolean(true),
            Reply::Null,
        ]),
        Reply::Verbatim {
            format: *b"txt",
            text: b"some text".to_vec(),
        },
        Reply::Push(vec![Reply::Simple("OK".into()), Reply::error("ERR x")]),
        Reply::Bulk(None),
        Reply::Array(None),
    ]));
    for version in [RespVersion::Resp2, RespVersion::Resp3] {
        let size = nested.to_bytes(version).len();
        assert!(
            size <= nested.encoded_size_max(),
            "{size} > {}",
            nested.encoded_size_max()
        );
        assert!(
            nested.encoded_size_max() < size + 1000,
            "the bound is not loose"
        );
    }
}
