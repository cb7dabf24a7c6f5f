//! Every uWSGI config file and command line from the seed blog posts
//! (`/work/shared/seeds/*.txt`), copied verbatim into `tests/fixtures/seeds/`, parsed and
//! checked field by field.
//!
//! The configs name paths that do not exist here (`/data/项目目录/`, `/root/...`): parsing
//! never looks at the filesystem beyond the config files themselves, so they parse as
//! written.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use rsgi_proto::config::{ListenAddr, Notice, Protocol, SocketSpec, VassalConfig};
use rsgi_proto::expand::EnvLookup;
use rsgi_proto::notify::EXIT_USAGE;
use rsgi_proto::{ConfigError, Host, Invocation, PathKind, System};

/// Plain opening (no fixture is a FIFO) and fixed host facts: the seeds name none of them.
struct Fixtures;

impl System for Fixtures {
    fn open_config(&self, path: &std::path::Path) -> std::io::Result<std::fs::File> {
        std::fs::File::open(path)
    }
    fn host(&self) -> Host {
        Host {
            cwd: "/".into(),
            hostname: "seed".into(),
            cpus: 1,
            uid: 1000,
            user: "seed".into(),
            gid: 1000,
            group: "seed".into(),
            started: std::time::Duration::ZERO,
        }
    }
    fn path_kind(&self, _path: &std::path::Path) -> Option<PathKind> {
        None
    }
    fn real_path(&self, path: &std::path::Path) -> Option<PathBuf> {
        std::fs::canonicalize(path).ok()
    }
    fn glob(&self, _pattern: &str) -> Result<Vec<PathBuf>, String> {
        Ok(Vec::new())
    }
}

fn load_file(path: &str, env: EnvLookup<'_>) -> Result<VassalConfig, ConfigError> {
    rsgi_proto::load_file_with(path, env, &Fixtures)
}

fn parse_args(args: &[String], env: EnvLookup<'_>) -> Result<Invocation, ConfigError> {
    rsgi_proto::parse_args_with(args, env, &Fixtures)
}

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/seeds/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn tcp(protocol: Protocol, host: &str, port: u16) -> SocketSpec {
    SocketSpec {
        protocol,
        addr: ListenAddr::Tcp {
            host: host.to_owned(),
            port,
        },
    }
}

fn unix(protocol: Protocol, path: &str) -> SocketSpec {
    SocketSpec {
        protocol,
        addr: ListenAddr::Unix(PathBuf::from(path)),
    }
}

fn p(s: &str) -> Option<PathBuf> {
    Some(PathBuf::from(s))
}

fn notice(file: &str, line: usize, option: &str) -> (String, String) {
    (format!("{}:{line}", fixture(file)), option.to_owned())
}

fn notices(c: &VassalConfig) -> Vec<(String, String)> {
    c.notices
        .iter()
        .map(|Notice { origin, option, .. }| (origin.clone(), option.clone()))
        .collect()
}

/// The defaults, with the fields a check sets replaced; the checks compare whole configs,
/// so an unexpected side effect fails too.
fn config(f: impl FnOnce(&mut VassalConfig)) -> VassalConfig {
    let mut c = VassalConfig::default();
    f(&mut c);
    c
}

// --- 000: nowamagic (XML and ini for one Django site) -------------------------------

fn nowamagic_xml() -> VassalConfig {
    let file = "000_nowamagic_pj.xml";
    config(|c| {
        c.source = p(&fixture(file));
        c.sockets = vec![tcp(Protocol::Uwsgi, "127.0.0.1", 8077)];
        c.listen = 80;
        c.master = true;
        c.pythonpath = vec![PathBuf::from("/root/nowamagic_venv/nowamagic_pj")];
        c.processes = 1;
        c.logdate = true;
        c.daemonize = p("/var/log/uwsgi.log");
        c.notices = vec![Notice {
            origin: format!("{}:9", fixture(file)),
            option: "plugins".into(),
            why: "ignored: rsgi has Python built in; there are no plugins".into(),
        }];
    })
}

fn nowamagic_ini() -> VassalConfig {
    let file = "000_nowamagic_pj.ini";
    config(|c| {
        c.source = p(&fixture(file));
        c.sockets = vec![tcp(Protocol::Uwsgi, "127.0.0.1", 8077)];
        c.master = true;
        c.processes = 1;
        c.wsgi_file = p("/root/nowamagic_venv/nowamagic_pj/nowamagic_pj/wsgi.py");
        c.home = p("/root/nowamagic_venv");
        c.chdir = p("/root/nowamagic_venv/nowamagic_pj");
        c.notices = [(2, "vhost"), (3, "plugins"), (6, "enable-threads")]
            .into_iter()
            .map(|(line, option)| Notice {
                origin: format!("{}:{line}", fixture(file)),
                option: option.into(),
                why: format!(
                    "ignored: {}",
                    rsgi_proto::options::find(option)
                        .and_then(|o| o.noop_reason())
                        .unwrap()
                ),
            })
            .collect();
    })
}

#[test]
fn s000_xml() {
    assert_eq!(
        load_file(&fixture("000_nowamagic_pj.xml"), &no_env).unwrap(),
        nowamagic_xml()
    );
}

#[test]
fn s000_ini() {
    let file = "000_nowamagic_pj.ini";
    let c = load_file(&fixture(file), &no_env).unwrap();
    assert_eq!(c, nowamagic_ini());
    assert_eq!(
        notices(&c),
        [
            notice(file, 2, "vhost"),
            notice(file, 3, "plugins"),
            notice(file, 6, "enable-threads"),
        ]
    );
    assert!(c.notices.iter().all(|n| !n.why.is_empty()));
}

// --- 002: conf.ini and the unix-socket fragment --------------------------------------

fn conf_ini() -> VassalConfig {
    config(|c| {
        c.source = p(&fixture("002_conf.ini"));
        c.sockets = vec![tcp(Protocol::Http, "127.0.0.1", 8000)];
        c.chdir = p("/path/to/project/");
        c.wsgi_file = p("/path/to/wsgi.py");
        c.processes = 4;
        c.threads = 2;
        c.stats = Some("127.0.0.1:8080".into());
    })
}

#[test]
fn s002_conf_ini() {
    // Its first line is a `# conf.ini` comment, before the section.
    assert_eq!(
        load_file(&fixture("002_conf.ini"), &no_env).unwrap(),
        conf_ini()
    );
}

#[test]
fn s002_unix_socket_fragment_is_accepted_with_a_notice_for_the_ellipsis() {
    // The blog's "..." line is copied verbatim: it is not `key = value`. uWSGI reads it as
    // an unknown option without a value and ignores it; rsgi skips it and a notice names it.
    let file = fixture("002_unix_socket.ini");
    let c = load_file(&file, &no_env).unwrap();
    assert_eq!(c.sockets, [unix(Protocol::Uwsgi, "/path/to/sock.sock")]);
    assert_eq!(c.chmod_socket, Some(0o666));
    assert_eq!(c.notices.len(), 1, "{:?}", c.notices);
    assert_eq!(c.notices[0].origin, format!("{file}:4"));
    assert_eq!(c.notices[0].option, "...");
}

// --- 003: indented ini files from a Python code block --------------------------------

fn dmysite_ini() -> VassalConfig {
    config(|c| {
        c.source = p(&fixture("003_dmysite_uwsgi.ini"));
        c.sockets = vec![tcp(Protocol::Http, "0.0.0.0", 9005)];
        c.chdir = p("/data/项目目录/");
        c.wsgi_file = p("/项目/wsgi.py");
        c.processes = 4; // `process = 4`: uWSGI accepts the singular too
        c.threads = 2;
        c.static_map = vec![("/static".into(), PathBuf::from("/data/...c"))];
    })
}

fn deploy_ini() -> VassalConfig {
    config(|c| {
        c.source = p(&fixture("003_deploy_uwsgi.ini"));
        c.sockets = vec![tcp(Protocol::Http, "0.0.0.0", 9005)];
        c.chdir = p("/data/deploy/");
        c.wsgi_file = p("run.py");
        c.processes = 4;
        c.static_map = vec![("/static".into(), PathBuf::from("/data/deploy/static"))];
        c.callable = "app".into();
    })
}

fn uwsgi_socket_ini() -> VassalConfig {
    config(|c| {
        c.source = p(&fixture("003_uwsgi_socket.ini"));
        c.sockets = vec![tcp(Protocol::Uwsgi, "0.0.0.0", 9005)];
        c.chdir = p("/data/项目目录/");
        c.wsgi_file = p("/项目/wsgi.py");
        c.processes = 4;
        c.threads = 2;
    })
}

#[test]
fn s003_ini_files() {
    // dmysite's `[uwsgi]` is preceded by a tab, a space and a pasted no-break space; the
    // values have trailing spaces; every line is indented.
    let cases = [
        ("003_dmysite_uwsgi.ini", dmysite_ini()),
        ("003_deploy_uwsgi.ini", deploy_ini()),
        ("003_uwsgi_socket.ini", uwsgi_socket_ini()),
    ];
    for (file, want) in cases {
        assert_eq!(load_file(&fixture(file), &no_env).unwrap(), want, "{file}");
    }
}

// --- command lines -------------------------------------------------------------------

/// Config file names in the seed command lines, and the fixture holding each.
const FILES: &[(&str, &str)] = &[
    (
        "/root/nowamagic_venv/nowamagic_pj/nowamagic_pj.xml",
        "000_nowamagic_pj.xml",
    ),
    (
        "/root/nowamagic_venv/nowamagic_pj.ini",
        "000_nowamagic_pj.ini",
    ),
    ("conf.ini", "002_conf.ini"),
    ("dmysite_uwsgi.ini", "003_dmysite_uwsgi.ini"),
    ("deploy_uwsgi.ini", "003_deploy_uwsgi.ini"),
    ("uwsgi_socket.ini", "003_uwsgi_socket.ini"),
];

fn run(line: &str) -> Result<Invocation, ConfigError> {
    let args: Vec<String> = line
        .split_whitespace()
        .map(|a| match FILES.iter().find(|(name, _)| *name == a) {
            Some((_, file)) => fixture(file),
            None => a.to_owned(),
        })
        .collect();
    parse_args(&args, &no_env)
}

fn serves(want: VassalConfig) -> impl Fn(Result<Invocation, ConfigError>) {
    move |got| match got {
        Ok(Invocation::Serve(c)) => assert_eq!(*c, want),
        other => panic!("expected Serve, got {other:?}"),
    }
}

type Expect = Box<dyn Fn(Result<Invocation, ConfigError>)>;

fn expectations() -> Vec<(&'static str, Expect)> {
    let yikaoyan = |c: &mut VassalConfig| {
        c.chdir = p("/code/yikaoyan/");
        c.wsgi_file = p("yikaoyan/wsgi.py");
        c.master = true;
        c.stats = Some("127.0.0.1:9191".into());
    };
    vec![
        // 000
        ("-x /root/nowamagic_venv/nowamagic_pj/nowamagic_pj.xml", Box::new(serves(nowamagic_xml()))),
        ("--ini /root/nowamagic_venv/nowamagic_pj.ini", Box::new(serves(nowamagic_ini()))),
        // 001
        (
            "--http :8001 --wsgi-file test.py",
            Box::new(serves(config(|c| {
                c.sockets = vec![tcp(Protocol::Http, "", 8001)];
                c.wsgi_file = p("test.py");
            }))),
        ),
        (
            "--http :8000 --chdir /home/work/src/sites/testdjango1/testdjango/mysite --module django_wsgi",
            Box::new(serves(config(|c| {
                c.sockets = vec![tcp(Protocol::Http, "", 8000)];
                c.chdir = p("/home/work/src/sites/testdjango1/testdjango/mysite");
                c.module = Some("django_wsgi".into());
            }))),
        ),
        // 002
        (
            "--http 127.0.0.1:8000 --chdir /path/to/project/ --wsgi-file /path/to/wsgi.py",
            Box::new(serves(config(|c| {
                c.sockets = vec![tcp(Protocol::Http, "127.0.0.1", 8000)];
                c.chdir = p("/path/to/project/");
                c.wsgi_file = p("/path/to/wsgi.py");
            }))),
        ),
        (
            "--http 127.0.0.1:8000 --chdir /path/to/project/ --wsgi-file /path/to/wsgi.py --processes 4 --threads 2 --stats 127.0.0.1:8080",
            Box::new(serves(config(|c| {
                *c = conf_ini();
                c.source = None; // same settings as conf.ini, from the command line
            }))),
        ),
        ("conf.ini", Box::new(serves(conf_ini()))),
        (
            "--stop /path/to/uwsgi-master.pid",
            Box::new(|got| assert_eq!(got.unwrap(), Invocation::Stop("/path/to/uwsgi-master.pid".into()))),
        ),
        (
            "--reload /path/to/uwsgi-master.pid",
            Box::new(|got| assert_eq!(got.unwrap(), Invocation::Reload("/path/to/uwsgi-master.pid".into()))),
        ),
        (
            ":port",
            Box::new(|got| {
                let err = got.unwrap_err();
                assert!(err.to_string().starts_with("command line: unexpected argument ':port'"), "{err}");
                assert_eq!(err.exit_code(), EXIT_USAGE);
            }),
        ),
        // 003
        (
            "--http :9001 --wsgi-file app.py",
            Box::new(serves(config(|c| {
                c.sockets = vec![tcp(Protocol::Http, "", 9001)];
                c.wsgi_file = p("app.py");
            }))),
        ),
        (
            "--http :8000 --module mysite.wsgi",
            Box::new(serves(config(|c| {
                c.sockets = vec![tcp(Protocol::Http, "", 8000)];
                c.module = Some("mysite.wsgi".into());
            }))),
        ),
        (
            "--http :9005 --chdir /data/项目目录/ --wsgi-file /项目/wsgi.py --master --process 4 --threads 2 --static-map /static=/data/...c",
            Box::new(serves(config(|c| {
                *c = dmysite_ini();
                c.source = None;
                c.sockets = vec![tcp(Protocol::Http, "", 9005)];
                c.master = true;
            }))),
        ),
        (
            "--http :9002 --wsgi-file run.py --callable app",
            Box::new(serves(config(|c| {
                c.sockets = vec![tcp(Protocol::Http, "", 9002)];
                c.wsgi_file = p("run.py");
                c.callable = "app".into();
            }))),
        ),
        ("--ini dmysite_uwsgi.ini", Box::new(serves(dmysite_ini()))),
        ("--ini deploy_uwsgi.ini", Box::new(serves(deploy_ini()))),
        ("uwsgi_socket.ini", Box::new(serves(uwsgi_socket_ini()))),
        // 004
        (
            "--http-socket 127.0.0.1:11112 --chdir /code/yikaoyan/ --wsgi-file yikaoyan/wsgi.py --master --processes=4 --threads=2 --stats 127.0.0.1:9191",
            Box::new(serves(config(|c| {
                yikaoyan(c);
                c.sockets = vec![tcp(Protocol::Http, "127.0.0.1", 11112)];
                c.processes = 4;
                c.threads = 2;
            }))),
        ),
        (
            "--socket :11112 --chdir /code/yikaoyan/ --wsgi-file yikaoyan/wsgi.py --master --processes=4 --threads=2 --stats 127.0.0.1:9191",
            Box::new(serves(config(|c| {
                yikaoyan(c);
                c.sockets = vec![tcp(Protocol::Uwsgi, "", 11112)];
                c.processes = 4;
                c.threads = 2;
            }))),
        ),
        (
            "--chdir /code/yikaoyan/ --socket yikaoyan.sock  --wsgi-file yikaoyan/wsgi.py --master --processes=2 --threads=4 --stats 127.0.0.1:9191",
            Box::new(serves(config(|c| {
                yikaoyan(c);
                c.sockets = vec![unix(Protocol::Uwsgi, "yikaoyan.sock")];
                c.processes = 2;
                c.threads = 4;
            }))),
        ),
        (
            "--module myapp --socket :3030 --stats /tmp/stats.socket",
            Box::new(serves(config(|c| {
                c.module = Some("myapp".into());
                c.sockets = vec![tcp(Protocol::Uwsgi, "", 3030)];
                c.stats = Some("/tmp/stats.socket".into());
            }))),
        ),
        (
            "--module yikaoyan.wsgi --processes=10 --threads=2 --buffer-size=65535  --http :11122 --stats :9191 --stats-http",
            Box::new(serves(config(|c| {
                c.module = Some("yikaoyan.wsgi".into());
                c.processes = 10;
                c.threads = 2;
                c.buffer_size = 65535;
                c.sockets = vec![tcp(Protocol::Http, "", 11122)];
                c.stats = Some(":9191".into());
                c.stats_http = true;
            }))),
        ),
    ]
}

#[test]
fn command_lines() {
    let text = std::fs::read_to_string(fixture("cmdlines.txt")).unwrap();
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let expectations = expectations();
    let expected_lines: Vec<&str> = expectations.iter().map(|(l, _)| *l).collect();
    assert_eq!(
        lines, expected_lines,
        "cmdlines.txt and this table must list the same lines"
    );
    for (line, expect) in &expectations {
        eprintln!("checking: {line}");
        expect(run(line));
    }
}

/// The same 003 ini, given as a positional file, with an option after it that overrides
/// one value and a repeatable one that adds (uWSGI command-line order semantics).
#[test]
fn options_after_a_seed_file_override_or_append() {
    let got = run("dmysite_uwsgi.ini --processes 8 --http 127.0.0.1:9006 --master").unwrap();
    let Invocation::Serve(c) = got else {
        panic!("{got:?}")
    };
    assert_eq!(c.processes, 8);
    assert!(c.master);
    assert_eq!(
        c.sockets,
        [
            tcp(Protocol::Http, "0.0.0.0", 9005),
            tcp(Protocol::Http, "127.0.0.1", 9006)
        ]
    );
    assert_eq!(c.source, p(&fixture("003_dmysite_uwsgi.ini")));
}
