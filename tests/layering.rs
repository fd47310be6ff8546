//! The module layering is a checked fact, not a convention. ARCHITECTURE.md
//! holds a `layers` block: each module's line names the modules it may
//! import, and after `|` the names its non-test code must not use (no
//! sockets in codecs, no channels in policy, no disk in `core`). This test
//! reads that block and every file under `src/`, and fails on any import or
//! name the block does not allow, so the document and the code cannot drift.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// One module's line of the `layers` block.
#[derive(Debug, Default)]
struct Rule {
    may_import: BTreeSet<String>,
    must_not_use: Vec<String>,
}

fn parse_layers(markdown: &str) -> BTreeMap<String, Rule> {
    let block = markdown
        .split("```layers\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("ARCHITECTURE.md has a ```layers block");
    let mut rules = BTreeMap::new();
    for line in block.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (imports, banned) = line.split_once('|').unwrap_or((line, ""));
        let (module, deps) = imports
            .split_once(':')
            .unwrap_or_else(|| panic!("layers line without `module:`: {line}"));
        let rule = Rule {
            may_import: deps.split_whitespace().map(str::to_string).collect(),
            must_not_use: banned.split_whitespace().map(str::to_string).collect(),
        };
        assert!(
            rules.insert(module.trim().to_string(), rule).is_none(),
            "module {module} listed twice"
        );
    }
    rules
}

/// Source with `//` comments blanked (line numbers kept). A `//` inside a
/// string literal ends the line early too: that can only hide a reference,
/// never invent one.
fn strip_comments(src: &str) -> String {
    src.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Everything before the first top-level `#[cfg(test)]`: the code that ships.
fn non_test(src: &str) -> &str {
    match src.find("\n#[cfg(test)]") {
        Some(i) => &src[..i],
        None => src,
    }
}

/// The crate modules `src` refers to, with the line of each reference:
/// `crate::x`, and every top-level name of `crate::{x, y::z}`.
fn crate_references(src: &str) -> Vec<(String, usize)> {
    let code = strip_comments(src);
    let mut out = Vec::new();
    let mut rest = code.as_str();
    let mut offset = 0;
    while let Some(i) = rest.find("crate::") {
        let before = rest[..i].chars().next_back();
        let after = &rest[i + "crate::".len()..];
        let at = offset + i;
        let line = code[..at].matches('\n').count() + 1;
        // `btnode_crate::`, `$crate::` and the like are not ours.
        if !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            if let Some(group) = after.strip_prefix('{') {
                let mut depth = 1;
                let mut item = String::new();
                for c in group.chars() {
                    match c {
                        '{' => depth += 1,
                        '}' => depth -= 1,
                        ',' if depth == 1 => {
                            out.extend(first_ident(&item).map(|m| (m, line)));
                            item.clear();
                            continue;
                        }
                        _ => {}
                    }
                    if depth == 0 {
                        break;
                    }
                    if depth == 1 {
                        item.push(c);
                    }
                }
                out.extend(first_ident(&item).map(|m| (m, line)));
            } else {
                out.extend(first_ident(after).map(|m| (m, line)));
            }
        }
        offset = at + "crate::".len();
        rest = &code[offset..];
    }
    out
}

fn first_ident(s: &str) -> Option<String> {
    let ident: String = s
        .trim_start()
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    (!ident.is_empty() && ident != "self").then_some(ident)
}

/// A file's module: the folder under `src/`, or the file's stem for a file
/// directly in `src/`.
fn module_of(src_dir: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src_dir).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every arrow and name that `rules` forbids in the tree at `src_dir`.
fn violations(src_dir: &Path, rules: &BTreeMap<String, Rule>) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(src_dir, &mut files);
    files.sort();
    let mut found = Vec::new();
    for file in files {
        let module = module_of(src_dir, &file);
        // The crate root and the binary name every module by design.
        if module == "lib" || module == "main" {
            continue;
        }
        let shown = file.strip_prefix(src_dir).unwrap().display().to_string();
        let Some(rule) = rules.get(&module) else {
            found.push(format!(
                "src/{shown}: module `{module}` has no line in the layers block"
            ));
            continue;
        };
        let src = std::fs::read_to_string(&file).unwrap();
        for (target, line) in crate_references(&src) {
            if target != module && !rule.may_import.contains(&target) {
                found.push(format!("src/{shown}:{line}: `{module}` imports `{target}`"));
            }
        }
        let shipped = strip_comments(non_test(&src));
        for name in &rule.must_not_use {
            for (n, l) in shipped.lines().enumerate() {
                if l.contains(name.as_str()) {
                    found.push(format!("src/{shown}:{}: `{module}` uses `{name}`", n + 1));
                }
            }
        }
    }
    found
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn modules_import_only_what_architecture_md_allows() {
    let md = std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    let rules = parse_layers(&md);
    for (module, rule) in &rules {
        for dep in &rule.may_import {
            assert!(
                rules.contains_key(dep),
                "layers: {module} may import `{dep}`, which has no line"
            );
        }
    }
    let found = violations(&root().join("src"), &rules);
    assert!(
        found.is_empty(),
        "imports or names the layers block in ARCHITECTURE.md does not allow:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_layers_have_no_cycle() {
    let md = std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    let rules = parse_layers(&md);
    // Depth-first search from each module; a module met again on the
    // current path closes a cycle.
    fn visit<'a>(
        m: &'a str,
        rules: &'a BTreeMap<String, Rule>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) {
        if done.contains(m) {
            return;
        }
        assert!(!path.contains(&m), "cycle in the layers: {path:?} -> {m}");
        path.push(m);
        for dep in &rules[m].may_import {
            visit(dep, rules, path, done);
        }
        path.pop();
        done.insert(m);
    }
    let mut done = BTreeSet::new();
    for m in rules.keys() {
        visit(m, &rules, &mut Vec::new(), &mut done);
    }
}

/// The check itself is checked: a tree with a wrong import and a banned
/// name is caught, with the file and line of each.
#[test]
fn a_wrong_import_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    std::fs::create_dir_all(src.join("core")).unwrap();
    std::fs::create_dir_all(src.join("swarm")).unwrap();
    std::fs::write(
        src.join("core/mod.rs"),
        "// crate::swarm in a comment is fine\nuse crate::{core::x,\n  swarm::{a, b}};\n",
    )
    .unwrap();
    std::fs::write(
        src.join("swarm/mod.rs"),
        "use crate::core::Bitfield;\nuse crossbeam_channel::Sender;\n#[cfg(test)]\nmod t { use crossbeam_channel::bounded; }\n",
    )
    .unwrap();
    std::fs::write(src.join("stray.rs"), "").unwrap();
    let rules = parse_layers("```layers\ncore: | std::fs\nswarm: core | crossbeam\n```\n");
    let found = violations(src, &rules);
    assert_eq!(
        found,
        [
            "src/core/mod.rs:2: `core` imports `swarm`",
            "src/stray.rs: module `stray` has no line in the layers block",
            "src/swarm/mod.rs:2: `swarm` uses `crossbeam`",
        ],
        "{found:#?}"
    );
}
