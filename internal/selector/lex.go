package selector

import (
	"fmt"
	"strconv"
	"unicode/utf8"
)

// tokKind is the kind of a lexical token.
type tokKind uint8

const (
	tokEOF    tokKind = iota
	tokError          // text is the error message
	tokIdent          // label key or keyword; keywords are resolved by the parser
	tokString         // text is the literal without its quotes
	tokLParen
	tokRParen
	tokLBrace
	tokRBrace
	tokComma
	tokEq  // ==
	tokNe  // !=
	tokNot // !
	tokAnd // &&
	tokOr  // ||
)

// token is one lexical token; pos is its byte offset in the input.
type token struct {
	kind tokKind
	pos  int
	text string
}

// describe names the token for "found ..." in error messages.
func (t token) describe() string {
	switch t.kind {
	case tokEOF:
		return "end of input"
	case tokString:
		return "string literal"
	}
	return strconv.Quote(t.text)
}

// lex splits input into tokens. The last token is tokEOF, or tokError at the
// first lexical error; the parser reports that error only when it reaches
// it, so an earlier syntax error wins.
func lex(input string) []token {
	var toks []token
	i := 0
	for {
		for i < len(input) && isSpace(input[i]) {
			i++
		}
		if i == len(input) {
			return append(toks, token{kind: tokEOF, pos: i})
		}
		start := i
		c := input[i]
		var kind tokKind
		switch {
		case isIdentByte(c):
			for i < len(input) && isIdentByte(input[i]) {
				i++
			}
			toks = append(toks, token{kind: tokIdent, pos: start, text: input[start:i]})
			continue
		case c == '"' || c == '\'':
			end := -1
			for j := i + 1; j < len(input); j++ {
				if input[j] == c {
					end = j
					break
				}
			}
			if end < 0 {
				return append(toks, token{kind: tokError, pos: start, text: "unterminated string literal"})
			}
			toks = append(toks, token{kind: tokString, pos: start, text: input[start+1 : end]})
			i = end + 1
			continue
		case c == '(':
			kind = tokLParen
		case c == ')':
			kind = tokRParen
		case c == '{':
			kind = tokLBrace
		case c == '}':
			kind = tokRBrace
		case c == ',':
			kind = tokComma
		case c == '!' && next(input, i) == '=':
			kind = tokNe
		case c == '!':
			kind = tokNot
		case c == '=' && next(input, i) == '=':
			kind = tokEq
		case c == '&' && next(input, i) == '&':
			kind = tokAnd
		case c == '|' && next(input, i) == '|':
			kind = tokOr
		default:
			return append(toks, token{kind: tokError, pos: start, text: badChar(input[i:])})
		}
		i++
		if kind == tokNe || kind == tokEq || kind == tokAnd || kind == tokOr {
			i++
		}
		toks = append(toks, token{kind: kind, pos: start, text: input[start:i]})
	}
}

// next returns the byte after position i, or 0 at the end of input.
func next(input string, i int) byte {
	if i+1 < len(input) {
		return input[i+1]
	}
	return 0
}

func badChar(rest string) string {
	switch rest[0] {
	case '=':
		return `unexpected character "=" (did you mean "=="?)`
	case '&':
		return `unexpected character "&" (did you mean "&&"?)`
	case '|':
		return `unexpected character "|" (did you mean "||"?)`
	}
	_, size := utf8.DecodeRuneInString(rest)
	return fmt.Sprintf("unexpected character %q", rest[:size])
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r'
}

// isIdentByte reports whether c can be part of a label key (or keyword).
func isIdentByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '_' || c == '.' || c == '/'
}
