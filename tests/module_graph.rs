//! The modules of `src/` import one way (STYLE: "imports flow one way, down the pipeline"):
//! no cycle among them. Every module is a node (a file, or a `mod.rs` for its folder); every
//! `use` and every `crate::`/`super::` path from one module to another is an edge, to the
//! deepest module the path names (an item re-exported by a folder counts for the folder).
//! References between a module and its own submodules are its inner structure, not edges;
//! test modules are left out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

type Module = Vec<String>;

/// Every module of the library with its source, test modules cut off.
fn modules() -> BTreeMap<Module, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = BTreeMap::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                if path.file_name().unwrap() != "bin" {
                    dirs.push(path);
                }
                continue;
            }
            let rel: Vec<String> =
                path.strip_prefix(&root).unwrap().iter().map(|p| p.to_string_lossy().into_owned()).collect();
            let file = rel.last().unwrap().clone();
            if !file.ends_with(".rs") || file == "tests.rs" || rel == ["lib.rs"] || rel == ["main.rs"] {
                continue;
            }
            let mut module: Module = rel[..rel.len() - 1].to_vec();
            if file != "mod.rs" {
                module.push(file.trim_end_matches(".rs").to_string());
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let code = match text.find("#[cfg(test)]\nmod tests") {
                Some(cut) => text[..cut].to_string(),
                None => text,
            };
            out.insert(module, strip_comments(&code));
        }
    }
    out
}

/// The code without `//` comments (doc comments name modules in prose).
fn strip_comments(code: &str) -> String {
    code.lines().map(|l| l.split("//").next().unwrap_or_default()).collect::<Vec<_>>().join("\n")
}

/// The paths of a `use` tree: `a::{b, c::{d, e}}` → `a::b`, `a::c::d`, `a::c::e`.
fn expand(tree: &str) -> Vec<Vec<String>> {
    let words: Vec<&str> = tree.split_whitespace().collect();
    // `x as y` names x.
    let kept: Vec<&str> = words
        .iter()
        .enumerate()
        .filter(|(i, w)| **w != "as" && (*i == 0 || words[i - 1] != "as"))
        .map(|(_, w)| *w)
        .collect();
    let tree: String = kept.concat();
    let Some(open) = tree.find('{') else {
        let path = tree.split(" as ").next().unwrap_or(&tree);
        return vec![path.split("::").filter(|s| !s.is_empty()).map(str::to_string).collect()];
    };
    let prefix: Vec<String> =
        tree[..open].split("::").filter(|s| !s.is_empty()).map(str::to_string).collect();
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let (mut depth, mut start, mut parts) = (0, 0, Vec::new());
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .filter(|p| !p.is_empty())
        .flat_map(|p| expand(p).into_iter().map(|tail| prefix.iter().cloned().chain(tail).collect()))
        .collect()
}

/// Every path a module's code names: `use` trees, and `crate::`/`super::` paths inline.
fn paths(code: &str) -> Vec<Vec<String>> {
    let uses = regex_like_uses(code);
    let mut out: Vec<Vec<String>> = uses.iter().flat_map(|u| expand(u)).collect();
    for anchor in ["crate::", "super::"] {
        let mut rest = code;
        while let Some(at) = rest.find(anchor) {
            let from = &rest[at..];
            let end =
                from.find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':')).unwrap_or(from.len());
            out.push(from[..end].split("::").filter(|s| !s.is_empty()).map(str::to_string).collect());
            rest = &from[anchor.len()..];
        }
    }
    out
}

/// The trees of `use ...;` statements (a line that starts one, with any visibility).
fn regex_like_uses(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut offset = 0;
    for line in code.split_inclusive('\n') {
        let trimmed = line.trim_start();
        let visibility = ["pub(crate) ", "pub(super) ", "pub "].iter().find(|v| trimmed.starts_with(**v));
        let body = visibility.map_or(trimmed, |v| &trimmed[v.len()..]);
        if let Some(tree) = body.strip_prefix("use ") {
            let start = offset + (line.len() - tree.len());
            if let Some(end) = code[start..].find(';') {
                out.push(code[start..start + end].to_string());
            }
        }
        offset += line.len();
    }
    out
}

/// The module a path from `from` leads to, if it is one of ours.
fn resolve(from: &Module, path: &[String], known: &BTreeMap<Module, String>) -> Option<Module> {
    let mut base: Module = match path.first().map(String::as_str) {
        Some("crate") => Vec::new(),
        Some("super") | Some("self") => from.clone(),
        Some(first) if known.contains_key(&[from.clone(), vec![first.to_string()]].concat()) => from.clone(),
        _ => return None,
    };
    let mut rest = path;
    if rest.first().is_some_and(|s| s == "crate" || s == "self") {
        rest = &rest[1..];
    }
    while rest.first().is_some_and(|s| s == "super") {
        base.pop();
        rest = &rest[1..];
    }
    let mut target = base;
    for seg in rest {
        let next: Module = [target.clone(), vec![seg.clone()]].concat();
        if !known.contains_key(&next) {
            break;
        }
        target = next;
    }
    (!target.is_empty()).then_some(target)
}

fn edges() -> BTreeMap<Module, BTreeSet<Module>> {
    let known = modules();
    let mut graph: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    for (module, code) in &known {
        for path in paths(code) {
            let Some(target) = resolve(module, &path, &known) else { continue };
            let inner = target.starts_with(module) || module.starts_with(&target);
            if !inner {
                graph.entry(module.clone()).or_default().insert(target);
            }
        }
    }
    graph
}

/// One cycle of the graph, if it has one.
fn cycle(graph: &BTreeMap<Module, BTreeSet<Module>>) -> Option<Vec<Module>> {
    fn visit(
        node: &Module,
        graph: &BTreeMap<Module, BTreeSet<Module>>,
        state: &mut BTreeMap<Module, u8>,
        stack: &mut Vec<Module>,
    ) -> Option<Vec<Module>> {
        state.insert(node.clone(), 1);
        stack.push(node.clone());
        for next in graph.get(node).into_iter().flatten() {
            match state.get(next) {
                Some(1) => {
                    let at = stack.iter().position(|m| m == next).unwrap();
                    return Some([stack[at..].to_vec(), vec![next.clone()]].concat());
                }
                Some(_) => {}
                None => {
                    if let Some(found) = visit(next, graph, state, stack) {
                        return Some(found);
                    }
                }
            }
        }
        stack.pop();
        state.insert(node.clone(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in graph.keys() {
        if !state.contains_key(node) {
            if let Some(found) = visit(node, graph, &mut state, &mut Vec::new()) {
                return Some(found);
            }
        }
    }
    None
}

fn name(m: &Module) -> String {
    m.join("::")
}

#[test]
fn the_modules_of_src_import_one_way() {
    let graph = edges();
    if let Some(found) = cycle(&graph) {
        let path: Vec<String> = found.iter().map(name).collect();
        panic!("an import cycle: {}", path.join(" → "));
    }
}

#[test]
fn the_cycle_check_finds_a_cycle_when_there_is_one() {
    let m = |s: &str| -> Module { s.split("::").map(str::to_string).collect() };
    let mut graph = edges();
    assert!(graph.get(&m("pipeline")).is_some_and(|e| e.contains(&m("stage"))), "pipeline uses stage");
    graph.entry(m("stage")).or_default().insert(m("pipeline"));
    assert!(cycle(&graph).is_some());
    let want: Vec<Vec<String>> = vec![m("a::b"), m("a::c::d"), m("a::c::e")];
    assert_eq!(expand("a::{b, c::{d, e as f}}"), want);
}

#[test]
#[ignore = "prints the graph: cargo test --test module_graph -- --ignored --nocapture"]
fn print_the_graph() {
    for (from, to) in edges() {
        println!("{} -> {}", name(&from), to.iter().map(name).collect::<Vec<_>>().join(", "));
    }
}
