//! Architecture check: the modules of `src/` import each other without a circle.
//!
//! Every `src/**/*.rs` file of this repository (read from `CARGO_MANIFEST_DIR`, never from
//! elsewhere) is one module (`src/a/mod.rs` and `src/a.rs` are `a`, `src/a/b.rs` is `a::b`;
//! `src/lib.rs` is the crate root; `src/main.rs` and `src/bin/` are binaries outside the
//! library and are skipped). Its dependencies are the `crate::…`, `super::…` and `self::…`
//! paths in its code (comments and string literals removed), in `use` trees and in qualified
//! paths alike, each resolved to the longest module prefix it names.
//!
//! Re-exports (`pub use`, `pub(crate) use`) are
//! resolved to their targets: a path through a re-export counts as a dependency on the module
//! that defines the item, and the re-export itself is no edge (a facade does not use what it
//! shows). Paths relative to a module (`child::item`, 2018 edition) count as well. A
//! submodule's uses of its own ancestors are no edge (the submodule is part of them: Rust
//! gives it their private items). The graph must then have no cycle; a cycle found is
//! printed module by module.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// One module's re-exports: `name -> target path` and glob targets.
#[derive(Default, Debug)]
struct Reexports {
    named: BTreeMap<String, Vec<String>>,
    globs: Vec<Vec<String>>,
}

/// The parsed source tree.
struct Tree {
    /// Module path (segments) -> file.
    files: BTreeMap<Vec<String>, PathBuf>,
    reexports: BTreeMap<Vec<String>, Reexports>,
    /// Module -> the (unresolved, absolute) paths its code names.
    uses: BTreeMap<Vec<String>, Vec<Vec<String>>>,
}

fn module_of(rel: &Path) -> Option<Vec<String>> {
    let mut segs: Vec<String> = rel
        .iter()
        .map(|s| s.to_string_lossy().into_owned())
        .collect();
    if segs.first().map(String::as_str) == Some("bin") {
        return None;
    }
    let last = segs.pop()?;
    let stem = last.strip_suffix(".rs")?;
    match stem {
        "lib" if segs.is_empty() => {}
        "main" if segs.is_empty() => return None,
        "mod" => {}
        s => segs.push(s.to_string()),
    }
    Some(segs)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Source text with comments, string literals and char literals blanked (lengths kept).
fn strip(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let rest = &b[i..];
        if rest.starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                out.push(b' ');
                i += 1;
            }
        } else if rest.starts_with(b"/*") {
            let mut depth = 0;
            while i < b.len() {
                if b[i..].starts_with(b"/*") {
                    depth += 1;
                    out.extend_from_slice(b"  ");
                    i += 2;
                } else if b[i..].starts_with(b"*/") {
                    depth -= 1;
                    out.extend_from_slice(b"  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(if b[i] == b'\n' { b'\n' } else { b' ' });
                    i += 1;
                }
            }
        } else if (rest.starts_with(b"r\"") || rest.starts_with(b"r#"))
            && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_'))
        {
            // Raw string r#*"..."#*.
            let mut j = i + 1;
            while j < b.len() && b[j] == b'#' {
                j += 1;
            }
            if j >= b.len() || b[j] != b'"' {
                out.push(b[i]);
                i += 1;
                continue;
            }
            let hashes = j - i - 1;
            let mut close = vec![b'"'];
            close.extend(std::iter::repeat_n(b'#', hashes));
            let mut k = j + 1;
            while k < b.len() && !b[k..].starts_with(&close) {
                k += 1;
            }
            let end = (k + close.len()).min(b.len());
            out.extend(std::iter::repeat_n(b' ', end - i));
            i = end;
        } else if b[i] == b'"' {
            out.push(b' ');
            i += 1;
            while i < b.len() && b[i] != b'"' {
                let n = if b[i] == b'\\' { 2 } else { 1 };
                for _ in 0..n.min(b.len() - i) {
                    out.push(if b[i] == b'\n' { b'\n' } else { b' ' });
                    i += 1;
                }
            }
            out.push(b' ');
            i += 1;
        } else if b[i] == b'\'' {
            // A char literal ('x', '\n', '\u{..}') or a lifetime ('a): blank only the former.
            let lit_end = if b.get(i + 1) == Some(&b'\\') {
                b.get(i + 3..)
                    .and_then(|r| r.iter().position(|&c| c == b'\''))
                    .map(|p| i + 4 + p)
            } else {
                let ch = src[i + 1..].chars().next().map_or(1, char::len_utf8);
                (b.get(i + 1 + ch) == Some(&b'\'')).then_some(i + 2 + ch)
            };
            match lit_end {
                Some(e) => {
                    out.extend(std::iter::repeat_n(b' ', e - i));
                    i = e;
                }
                None => {
                    out.push(b'\'');
                    i += 1;
                }
            }
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Parse a path (and a use tree, when `tree`) starting at `i`: `a::b::{c, d::e, self}`.
/// Returns the paths and the index after them.
fn parse_tree(
    t: &[u8],
    mut i: usize,
    prefix: Vec<String>,
    tree: bool,
) -> (Vec<Vec<String>>, usize) {
    let skip_ws = |t: &[u8], mut i: usize| {
        while i < t.len() && t[i].is_ascii_whitespace() {
            i += 1;
        }
        i
    };
    let mut path = prefix;
    loop {
        i = skip_ws(t, i);
        if tree && t.get(i) == Some(&b'{') {
            let mut out = Vec::new();
            i += 1;
            loop {
                i = skip_ws(t, i);
                match t.get(i) {
                    None => return (out, i),
                    Some(b'}') => return (out, i + 1),
                    Some(b',') => i += 1,
                    _ => {
                        let (sub, j) = parse_tree(t, i, path.clone(), true);
                        out.extend(sub);
                        i = j.max(i + 1);
                    }
                }
            }
        }
        if t.get(i) == Some(&b'*') {
            path.push("*".into());
            return (vec![path], i + 1);
        }
        let start = i;
        while i < t.len() && is_ident(t[i]) {
            i += 1;
        }
        if i == start {
            return (vec![path], i);
        }
        let seg = String::from_utf8_lossy(&t[start..i]).into_owned();
        if seg != "self" || path.is_empty() {
            path.push(seg);
        }
        let j = skip_ws(t, i);
        if t[j..].starts_with(b"::") {
            i = j + 2;
            continue;
        }
        // `as name` renames keep the path.
        let mut k = j;
        if t[k..].starts_with(b"as") && !t.get(k + 2).copied().is_some_and(is_ident) {
            k = skip_ws(t, k + 2);
            while k < t.len() && is_ident(t[k]) {
                k += 1;
            }
            i = k;
        }
        return (vec![path], i);
    }
}

/// Byte ranges of inline `mod name { ... }` blocks.
fn inline_mods(t: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(p) = find_word(t, i, b"mod") {
        let mut j = p + 3;
        while j < t.len() && t[j].is_ascii_whitespace() {
            j += 1;
        }
        while j < t.len() && is_ident(t[j]) {
            j += 1;
        }
        while j < t.len() && t[j].is_ascii_whitespace() {
            j += 1;
        }
        if t.get(j) == Some(&b'{') {
            let mut depth = 0;
            let mut k = j;
            while k < t.len() {
                match t[k] {
                    b'{' => depth += 1,
                    b'}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    _ => {}
                }
                k += 1;
            }
            out.push((j, k));
        }
        i = p + 3;
    }
    out
}

/// Next occurrence of the whole word `w` at or after `from`.
fn find_word(t: &[u8], from: usize, w: &[u8]) -> Option<usize> {
    let mut i = from;
    while i + w.len() <= t.len() {
        if &t[i..i + w.len()] == w
            && (i == 0 || !is_ident(t[i - 1]))
            && !t.get(i + w.len()).copied().is_some_and(is_ident)
        {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// Make `path` (starting `crate`, `super`, `self` or a plain name) absolute, seen from module
/// `m` at inline-module depth `depth`; `None` for paths that leave the crate.
fn absolute(
    path: &[String],
    m: &[String],
    depth: usize,
    children: &BTreeSet<String>,
) -> Option<Vec<String>> {
    match path.first().map(String::as_str) {
        Some("crate") => Some(path[1..].to_vec()),
        Some("super") => {
            let n = path.iter().take_while(|s| *s == "super").count();
            let up = n.saturating_sub(depth);
            if up > m.len() {
                return None;
            }
            let mut p = m[..m.len() - up].to_vec();
            p.extend_from_slice(&path[n..]);
            Some(p)
        }
        Some("self") => {
            let mut p = m.to_vec();
            p.extend_from_slice(&path[1..]);
            Some(p)
        }
        // A relative `pub use child::x` of a module: only child modules count.
        Some(first) if children.contains(first) => {
            let mut p = m.to_vec();
            p.extend_from_slice(path);
            Some(p)
        }
        _ => None,
    }
}

impl Tree {
    fn load(src: &Path) -> Tree {
        let mut paths = Vec::new();
        rust_files(src, &mut paths);
        let mut files = BTreeMap::new();
        for p in &paths {
            let rel = p.strip_prefix(src).expect("under src");
            if let Some(m) = module_of(rel) {
                files.insert(m, p.clone());
            }
        }
        let mut tree = Tree {
            files,
            reexports: BTreeMap::new(),
            uses: BTreeMap::new(),
        };
        let mods: Vec<(Vec<String>, PathBuf)> = tree
            .files
            .iter()
            .map(|(m, p)| (m.clone(), p.clone()))
            .collect();
        for (m, p) in mods {
            let text = strip(&std::fs::read_to_string(&p).expect("read source"));
            tree.parse_module(&m, text.as_bytes());
        }
        tree
    }

    fn children(&self, m: &[String]) -> BTreeSet<String> {
        self.files
            .keys()
            .filter(|k| k.len() == m.len() + 1 && k.starts_with(m))
            .map(|k| k[m.len()].clone())
            .collect()
    }

    fn parse_module(&mut self, m: &[String], t: &[u8]) {
        let inline = inline_mods(t);
        let depth_at = |p: usize| inline.iter().filter(|(a, b)| *a < p && p < *b).count();
        let children = self.children(m);
        let mut reexp = Reexports::default();
        let mut uses = Vec::new();
        // Spans of `pub use ...;` statements: re-exports, not edges.
        let mut reexport_spans = Vec::new();
        let mut i = 0;
        while let Some(p) = find_word(t, i, b"use") {
            i = p + 3;
            let before = String::from_utf8_lossy(&t[p.saturating_sub(16)..p]).into_owned();
            let before = before.trim_end();
            let public = before.ends_with("pub") || before.ends_with("pub(crate)");
            if !public {
                continue;
            }
            let (paths, end) = parse_tree(t, p + 3, Vec::new(), true);
            reexport_spans.push((p, end));
            for path in paths {
                let Some(abs) = absolute(&path, m, depth_at(p), &children) else {
                    continue;
                };
                let Some(last) = abs.last() else { continue };
                if last == "*" {
                    reexp.globs.push(abs[..abs.len() - 1].to_vec());
                } else {
                    // `pub use a::b as c` is read as `b`: close enough for module resolution.
                    reexp.named.insert(last.clone(), abs);
                }
            }
        }
        for start in [b"crate".as_slice(), b"super", b"self"] {
            let mut i = 0;
            while let Some(p) = find_word(t, i, start) {
                i = p + start.len();
                if !t[i..].starts_with(b"::") {
                    continue;
                }
                if reexport_spans.iter().any(|(a, b)| *a <= p && p < *b) {
                    continue;
                }
                // Inside a `use` tree the prefix may be `use crate::{a, b}` or a nested
                // `super::x` item; a path expression stops at the first non-path token.
                let (paths, _) = parse_tree(t, p, Vec::new(), true);
                for path in paths {
                    if let Some(abs) = absolute(&path, m, depth_at(p), &children) {
                        uses.push(abs);
                    }
                }
            }
        }
        // Paths relative to the module itself (2018 edition): `child::item`, `use child::X`,
        // for every child module declared by a file below this one.
        for child in &children {
            let mut i = 0;
            while let Some(p) = find_word(t, i, child.as_bytes()) {
                i = p + child.len();
                if !t[i..].starts_with(b"::") || (p >= 1 && t[p - 1] == b':') {
                    continue;
                }
                if reexport_spans.iter().any(|(a, b)| *a <= p && p < *b) {
                    continue;
                }
                let (paths, _) = parse_tree(t, p, Vec::new(), true);
                for path in paths {
                    if let Some(abs) = absolute(&path, m, depth_at(p), &children) {
                        uses.push(abs);
                    }
                }
            }
        }
        self.reexports.insert(m.to_vec(), reexp);
        self.uses.insert(m.to_vec(), uses);
    }

    /// The module that defines what `path` names: the longest module prefix, followed through
    /// re-exports.
    fn resolve(&self, path: &[String]) -> Option<Vec<String>> {
        let mut path = path.to_vec();
        for _ in 0..16 {
            let n = (0..=path.len())
                .rev()
                .find(|&n| self.files.contains_key(&path[..n]))?;
            let (m, rest) = path.split_at(n);
            let Some(first) = rest.first() else {
                // The module itself; a pure re-export module stands for its glob target.
                let r = self.reexports.get(m)?;
                match (
                    r.globs.as_slice(),
                    r.named.is_empty(),
                    self.uses[m].is_empty(),
                ) {
                    ([one], true, true) => {
                        path = one.clone();
                        continue;
                    }
                    _ => return Some(m.to_vec()),
                }
            };
            let r = self.reexports.get(m)?;
            if let Some(target) = r.named.get(first) {
                let mut p = target.clone();
                p.extend_from_slice(&rest[1..]);
                if p == path {
                    return Some(m.to_vec());
                }
                path = p;
                continue;
            }
            if let [one] = r.globs.as_slice() {
                let mut p = one.clone();
                p.extend_from_slice(rest);
                path = p;
                continue;
            }
            return Some(m.to_vec());
        }
        None
    }

    fn graph(&self) -> BTreeMap<String, BTreeSet<String>> {
        let name = |m: &[String]| {
            if m.is_empty() {
                "crate".to_string()
            } else {
                m.join("::")
            }
        };
        let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (m, uses) in &self.uses {
            let from = name(m);
            let e = g.entry(from.clone()).or_default();
            for u in uses {
                if let Some(to) = self.resolve(u) {
                    // A submodule using its own ancestors (`super::Item`) is part of them:
                    // a backend inside `optimize/` reading `optimize`'s problem type is no
                    // circle. Every other edge counts, parent to child included.
                    if m.starts_with(&to) {
                        continue;
                    }
                    let to = name(&to);
                    if to != from {
                        e.insert(to);
                    }
                }
            }
        }
        g
    }
}

/// A cycle of `g` (first node repeated at the end), or `None`. Depth-first search with
/// colours, nodes and edges in sorted order, so the cycle reported is deterministic.
fn find_cycle(g: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Colour {
        White,
        Grey,
        Black,
    }
    let mut colour: BTreeMap<&str, Colour> =
        g.keys().map(|k| (k.as_str(), Colour::White)).collect();
    for targets in g.values() {
        for t in targets {
            colour.entry(t.as_str()).or_insert(Colour::White);
        }
    }
    let nodes: Vec<&str> = colour.keys().copied().collect();
    let empty = BTreeSet::new();
    for &root in &nodes {
        if colour[root] != Colour::White {
            continue;
        }
        // Stack of (node, its successors not yet visited).
        let mut stack: Vec<(&str, Vec<&str>)> = Vec::new();
        let succ = |n: &str| -> Vec<&str> {
            g.get(n)
                .unwrap_or(&empty)
                .iter()
                .rev()
                .map(String::as_str)
                .collect()
        };
        colour.insert(root, Colour::Grey);
        stack.push((root, succ(root)));
        while let Some((node, next)) = stack.last_mut() {
            let node = *node;
            match next.pop() {
                Some(w) => match colour[w] {
                    Colour::White => {
                        colour.insert(w, Colour::Grey);
                        stack.push((w, succ(w)));
                    }
                    Colour::Grey => {
                        let at = stack.iter().position(|(n, _)| *n == w).expect("on stack");
                        let mut cycle: Vec<String> =
                            stack[at..].iter().map(|(n, _)| n.to_string()).collect();
                        cycle.push(w.to_string());
                        return Some(cycle);
                    }
                    Colour::Black => {}
                },
                None => {
                    colour.insert(node, Colour::Black);
                    stack.pop();
                }
            }
        }
    }
    None
}

fn graph_of(edges: &[(&str, &str)]) -> BTreeMap<String, BTreeSet<String>> {
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (a, b) in edges {
        g.entry(a.to_string()).or_default().insert(b.to_string());
        g.entry(b.to_string()).or_default();
    }
    g
}

#[test]
fn cycle_finder_finds_a_hand_made_cycle_and_accepts_a_dag() {
    let dag = graph_of(&[("a", "b"), ("b", "c"), ("a", "c"), ("d", "a")]);
    assert_eq!(find_cycle(&dag), None);
    let cyclic = graph_of(&[("a", "b"), ("b", "c"), ("c", "d"), ("d", "b"), ("e", "a")]);
    assert_eq!(
        find_cycle(&cyclic),
        Some(vec!["b".into(), "c".into(), "d".into(), "b".into()])
    );
    assert!(find_cycle(&graph_of(&[("x", "y"), ("y", "x")])).is_some());
}

#[test]
fn path_extraction_resolves_use_trees_super_and_reexports() {
    let t = strip(
        "use crate::a::{b::{self, C}, d};\n// crate::commented::out\nfn f() { let s = \"crate::in_string\"; super::e::g(); crate::h::i(); }\nmod tests { use super::*; }\n",
    );
    let (paths, _) = parse_tree(
        t.as_bytes(),
        t.find("crate").expect("crate"),
        Vec::new(),
        true,
    );
    let shown: Vec<String> = paths.iter().map(|p| p.join("::")).collect();
    assert_eq!(shown, ["crate::a::b", "crate::a::b::C", "crate::a::d"]);
    assert!(!t.contains("commented") && !t.contains("in_string"));
    let m = vec!["x".to_string(), "y".to_string()];
    let none = BTreeSet::new();
    let sup = ["super".to_string(), "e".to_string()];
    assert_eq!(
        absolute(&sup, &m, 0, &none),
        Some(vec!["x".into(), "e".into()])
    );
    // `super` inside an inline `mod tests` is the file's own module.
    assert_eq!(absolute(&sup[..1], &m, 1, &none), Some(m.clone()));
}

#[test]
fn no_import_cycles_between_modules() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let tree = Tree::load(&src);
    assert!(
        tree.files.len() > 20,
        "found only {} modules",
        tree.files.len()
    );
    let g = tree.graph();
    // The check sees real arrows (it would be vacuous otherwise), through re-exports too.
    let case = g.get("case").expect("module case");
    assert!(
        case.contains("io::dicom::ct") && case.contains("structures") && case.contains("error"),
        "case -> io::dicom::ct, structures, error not seen: {case:?}"
    );
    assert!(
        g.values().any(|t| t.contains("io::dicom::rtplan")),
        "nothing seen to use io::dicom::rtplan"
    );
    // Arrows that must not climb back up (issue 15): the case does not call segmentation,
    // the machine does not use the dose engine, the I/O layer knows no planner or CLI.
    let climbs: Vec<String> = g
        .iter()
        .flat_map(|(from, to)| to.iter().map(move |t| (from, t)))
        .filter(|(from, to)| {
            (from.as_str() == "case" && to.starts_with("segment"))
                || (from.as_str() == "machine" && to.starts_with("dose"))
                || (from.starts_with("io")
                    && ["plan", "cli", "progress", "segment", "optimize"]
                        .iter()
                        .any(|up| to.as_str() == *up || to.starts_with(&format!("{up}::"))))
        })
        .map(|(from, to)| format!("{from} -> {to}"))
        .collect();
    assert!(climbs.is_empty(), "arrows climbing back up: {climbs:?}");
    if let Some(cycle) = find_cycle(&g) {
        panic!(
            "import cycle between modules of src/:\n  {}\n(break it: move the shared type down a layer, or pass it in)",
            cycle.join("\n  -> ")
        );
    }
}
