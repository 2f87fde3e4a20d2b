"""The code detector over discussion text: planted positives and negatives for every rule, exact reasons.

Each case asserts the full list of reasons, so a rule that misfires on another rule's text (or on prose)
fails the test just as a rule that misses does.
"""

from __future__ import annotations

import pytest

from gocoder_assets.categorized_records.code_detect import CODE_RULES, code_reasons, has_code

BUG_REPORT = """\
### What version of the client are you using?

v1.4.2 (also reproduced on 1.5.0-rc.1)

### What did you see?

Calling `client.Do` with a canceled context panics:

```
panic: runtime error: invalid memory address or nil pointer dereference
[signal SIGSEGV: segmentation violation code=0x1 addr=0x0 pc=0x4a1b2c]

goroutine 1 [running]:
example.com/client.(*Client).Do(0x0, 0xc000010000)
	/home/me/go/src/example.com/client/client.go:88 +0x2c
main.main()
	/home/me/proj/main.go:12 +0x1d
exit status 2
```

Expected an error instead.
"""

FEATURE_REQUEST = """\
It would be great if the CLI could go faster on large repositories.

When the server returns an error, we should return it to the caller instead of retrying forever.
The type of error matters: a more func-tional API, where if err handling is consistent, would help.
Go is great, and we defer to the maintainers on the design. If you want, for example, I can write a proposal.
I will return to this later this week.
"""

NESTED_LIST_PR = """\
This PR does the following:

- Refactor the server
    - split the handler into smaller functions
    - add tests for the router
        - including the edge cases from the issue
- Update the docs
    1. the README
    2. the contributing guide

    Note: this paragraph continues the last item
    and it spans two lines.

Closes the issue.
"""

INDENTED_SNIPPET = """\
The handler should look like this:

    func handle(w http.ResponseWriter, r *http.Request) {
        if r.Method != http.MethodGet {
            w.WriteHeader(405)
        }
        fmt.Fprintln(w, "ok")
    }

Thanks!
"""

LINKS_AND_VERSIONS = """\
Upgrading from v1.2.3 to v1.3.0 (Go 1.22.1) fixed it. It works. Then I tried the beta.
See https://github.com/org/repo/blob/main/server/handler.go#L42 and https://pkg.go.dev/net/http for details,
or www.example.com/docs. Mail maintainers.Team@example.com if needed; see also pkg.go.dev/errors.
"""

CASES: list[tuple[str, str, list[str]]] = [
    # code_block
    ("fenced_go", "Repro:\n\n```go\nfunc main() {}\n```\n", ["code_block"]),
    ("fenced_tilde", "Output:\n~~~\nhello world\n~~~\nDone.", ["code_block"]),
    ("fenced_unclosed_to_end", "Log:\n```\nerror: something failed\nmore lines", ["code_block"]),
    ("fenced_empty_is_not_code", "```\n\n```\nNothing here.", []),
    ("fenced_in_quote_reply", "> ```\n> x = 1\n> ```\nI agree.", ["code_block"]),
    ("fenced_in_list_item", "1. Run:\n\n    ```sh\n    make test\n    ```\n", ["code_block"]),
    ("bug_report_fenced_trace", BUG_REPORT, ["code_block", "inline_code"]),
    ("indented_go_snippet", INDENTED_SNIPPET, ["code_block"]),
    ("indented_tab_snippet", "Try:\n\n\tx := compute()\n\tfmt.Println(x)\n", ["code_block"]),
    ("nested_list_is_not_code", NESTED_LIST_PR, []),
    ("indented_prose_is_not_code", "Quote:\n\n    The quick brown fox\n    jumps over the lazy dog.\n", []),
    # inline_code
    ("review_nit", "nit: use `errors.Is` here", ["inline_code"]),
    ("inline_double_backticks", "the ``a ` b`` form", ["inline_code"]),
    ("inline_triple_on_one_line", "```go func main() {}```", ["inline_code"]),
    ("apostrophes", "I don't think it's the server's fault, it's 'probably' the proxy.", []),
    ("stray_backtick", "Press ` to open the console.", []),
    ("blank_backtick_span", "an empty ` ` span", []),
    ("backticks_across_lines", "start ` here\nand end ` there", []),
    # go_line
    ("func_signature", "func (s *Server) Start() error {", ["go_line"]),
    ("if_err", "I think this needs\nif err != nil {\nbefore it", ["go_line"]),
    ("short_var_decl", "x := foo()", ["go_line"]),
    ("package_clause", "package main", ["go_line"]),
    ("import_clause", 'import "fmt"', ["go_line"]),
    ("defer_call", "defer f.Close()", ["go_line"]),
    ("go_func", "go func() {", ["go_line"]),
    ("type_struct", "type Foo struct {", ["go_line"]),
    ("for_loop", "for i := 0; i < n; i++ {", ["go_line"]),
    ("two_weak_lines", "return nil, err\n}", ["go_line"]),
    ("pasted_unformatted_func", "func main() {\nfmt.Println(x)\nreturn\n}", ["go_line"]),
    ("one_weak_line_is_not_enough", "return nil, err", []),
    ("lone_brace_is_not_enough", "}", []),
    ("feature_request_prose", FEATURE_REQUEST, []),
    ("keyword_led_prose", "return to this later\ntype of error\ngo to settings (top right)\ncase in point:", []),
    # code_reference
    ("selector_call", "The crash is in http.ListenAndServe() on startup.", ["code_reference"]),
    ("call_statement_alone", "fmt.Println(x)", ["code_reference"]),
    ("empty_call", "Call Close() before returning.", ["code_reference"]),
    ("method_expression", "(*Client).Do leaks the body.", ["code_reference"]),
    ("package_selector", "Use errors.Is here.", ["code_reference"]),
    ("go_file_path", "The bug is in pkg/server/handler.go.", ["code_reference"]),
    ("file_line", "see server.go:42", ["code_reference"]),
    ("go_mod", "Bump the version in go.mod please.", ["code_reference"]),
    ("goroutine_header", "goroutine 1 [running]:", ["code_reference"]),
    ("panic_line", "panic: runtime error: index out of range [3] with length 3", ["code_reference"]),
    ("stack_frame", "main.go:12 +0x1d", ["code_reference"]),
    ("links_and_versions", LINKS_AND_VERSIONS, []),
    ("email", "Contact john.Doe@example.com for access.", []),
    ("plural_parens_and_abbreviations", "The file(s) e.g. this, i.e. that, etc. ASP.NET and Node.js too.", []),
    ("lets_go", "Looks good, let's go. Ready to go!", []),
    ("cjk_emoji", "这个函数在 Windows 上无法运行。请帮忙看看 🙏 ありがとう！ 🚀✨", []),
    # several rules together
    (
        "pr_review_mixed",
        "LGTM, but see server.go:42:\n\n```go\nreturn err\n```\n\nand `ctx` is unused.\nx := 1",
        ["code_block", "inline_code", "go_line", "code_reference"],
    ),
    ("go_line_is_not_also_a_reference", "if err := srv.Start(); err != nil {\n\tlog.Fatal(err)\n}", ["go_line"]),
]


@pytest.mark.parametrize(("text", "expected"), [(t, e) for _, t, e in CASES], ids=[c[0] for c in CASES])
def test_code_reasons(text: str, expected: list[str]) -> None:
    assert code_reasons(text) == expected
    assert has_code(text) == bool(expected)


def test_reasons_are_ordered_and_unique() -> None:
    text = "`a` `b`\n```\nx\n```\n```\ny\n```\nsee a.go and b.go\nx := 1\ny := 2"
    assert code_reasons(text) == list(CODE_RULES)


def test_empty_text() -> None:
    assert code_reasons("") == []
    assert not has_code("\n\n   \n")


@pytest.mark.parametrize(
    "text",
    [
        ("The server will return to this later if you want, for example. " * 16 + "\n") * 1000,  # ~1 MB prose
        "Prose without a single line break, going on and on; " * 20_000,  # ~1 MB, one line
        "`" * 1_000_000,
        "a" + "`" * 1_000_000,
        "` x " * 250_000,
        "``a`" * 250_000,
        "`" + "a" * 1_000_000,
        "    " * 250_000,
        "    a\n\n" * 150_000,  # indented lines after blank lines, none code-like
        "- item\n    - nested\n" * 60_000,
        "a." * 500_000,
        "a/" * 500_000 + ".go",
        "x" * 1_000_000 + "@",
        "(" * 500_000 + ")" * 500_000,
        "{\n" * 500_000,
    ],
    ids=lambda t: repr(t[:12]),
)
def test_large_and_pathological_texts_finish(text: str) -> None:
    """Runs on every issue and PR: none of these may backtrack catastrophically (no timing assertion)."""
    reasons = code_reasons(text)
    assert set(reasons) <= set(CODE_RULES)
