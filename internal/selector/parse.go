package selector

import (
	"fmt"
	"strconv"
)

// Grammar (whitespace between tokens is ignored):
//
//	selector   = [ or ]                    empty means all()
//	or         = and { "||" and }
//	and        = unary { "&&" unary }
//	unary      = "!" unary | "(" or ")" | function | comparison
//	function   = "has" "(" key ")" | "all" "(" ")" | "global" "(" ")"
//	comparison = key ( "==" | "!=" | "contains" | "starts" "with" | "ends" "with" ) string
//	           | key ( "in" | "not" "in" ) "{" [ string { "," string } ] "}"
//	string     = '"' { any byte but '"' } '"' | "'" { any byte but "'" } "'"
//	key        = label key, see key.go
//
// Keywords are not reserved: has, all and global are functions only when a
// "(" follows, and the operator words are recognised only after a key, so
// `has == "x"` and `in in {"x"}` are valid.

// maxDepth bounds the nesting of "(" and "!", so that hostile input cannot
// make the recursive parser, printer or evaluator use unbounded stack.
const maxDepth = 200

// ParseError describes why a selector did not parse.
type ParseError struct {
	Pos   int    // byte offset in Input where the problem was found
	Msg   string // what was wrong, e.g. `expected ")", found end of input`
	Input string // the selector text
}

func (e *ParseError) Error() string {
	return fmt.Sprintf("selector %q: position %d: %s", e.Input, e.Pos, e.Msg)
}

type parser struct {
	input string
	toks  []token
	i     int // index of the current token
}

// parse parses input into a normalised tree.
func parse(input string) (*node, *ParseError) {
	p := &parser{input: input, toks: lex(input)}
	if p.peek().kind == tokEOF {
		return newLeaf(opAll, "", ""), nil
	}
	root, err := p.parseOr(0)
	if err != nil {
		return nil, err
	}
	if p.peek().kind != tokEOF {
		return nil, p.expected(`"&&", "||" or end of input`)
	}
	return root, nil
}

func (p *parser) peek() token { return p.toks[p.i] }

// advance consumes the current token and returns it. It never moves past
// tokEOF or tokError.
func (p *parser) advance() token {
	t := p.toks[p.i]
	if t.kind != tokEOF && t.kind != tokError {
		p.i++
	}
	return t
}

// expected reports that the current token is not what the grammar allows.
// If the current token is a lexical error, that error is reported instead.
func (p *parser) expected(what string) *ParseError {
	t := p.peek()
	if t.kind == tokError {
		return p.errorAt(t.pos, t.text)
	}
	return p.errorAt(t.pos, "expected "+what+", found "+t.describe())
}

func (p *parser) errorAt(pos int, msg string) *ParseError {
	return &ParseError{Pos: pos, Msg: msg, Input: p.input}
}

func (p *parser) parseOr(depth int) (*node, *ParseError) {
	var operands []*node
	for {
		x, err := p.parseAnd(depth)
		if err != nil {
			return nil, err
		}
		operands = append(operands, x)
		if p.peek().kind != tokOr {
			return newList(opOr, operands), nil
		}
		p.advance()
	}
}

func (p *parser) parseAnd(depth int) (*node, *ParseError) {
	var operands []*node
	for {
		x, err := p.parseUnary(depth)
		if err != nil {
			return nil, err
		}
		operands = append(operands, x)
		if p.peek().kind != tokAnd {
			return newList(opAnd, operands), nil
		}
		p.advance()
	}
}

func (p *parser) parseUnary(depth int) (*node, *ParseError) {
	t := p.peek()
	switch t.kind {
	case tokNot, tokLParen:
		if depth >= maxDepth {
			return nil, p.errorAt(t.pos, "expression nested too deeply (more than "+strconv.Itoa(maxDepth)+" levels of \"(\" and \"!\")")
		}
		p.advance()
		if t.kind == tokNot {
			x, err := p.parseUnary(depth + 1)
			if err != nil {
				return nil, err
			}
			return newNot(x), nil
		}
		x, err := p.parseOr(depth + 1)
		if err != nil {
			return nil, err
		}
		if p.peek().kind != tokRParen {
			return nil, p.expected(`"&&", "||" or ")"`)
		}
		p.advance()
		return x, nil
	case tokIdent:
		p.advance()
		if p.peek().kind == tokLParen {
			switch t.text {
			case "has", "all", "global":
				return p.parseFunction(t.text)
			}
		}
		return p.parseComparison(t)
	}
	return nil, p.expected("an expression")
}

// parseFunction parses the rest of has(key), all() or global(), after the name.
func (p *parser) parseFunction(name string) (*node, *ParseError) {
	p.advance() // "("
	var n *node
	switch name {
	case "has":
		t := p.peek()
		if t.kind != tokIdent {
			return nil, p.expected("a label key")
		}
		if err := p.checkKey(t); err != nil {
			return nil, err
		}
		p.advance()
		n = newLeaf(opHas, t.text, "")
	case "all":
		n = newLeaf(opAll, "", "")
	default:
		n = newLeaf(opGlobal, "", "")
	}
	if p.peek().kind != tokRParen {
		return nil, p.expected(`")"`)
	}
	p.advance()
	return n, nil
}

func (p *parser) checkKey(t token) *ParseError {
	if msg := keyError(t.text); msg != "" {
		return p.errorAt(t.pos, fmt.Sprintf("invalid label key %q: %s", t.text, msg))
	}
	return nil
}

// parseComparison parses the rest of a comparison after its key.
func (p *parser) parseComparison(key token) (*node, *ParseError) {
	if err := p.checkKey(key); err != nil {
		return nil, err
	}
	t := p.peek()
	var o op
	switch {
	case t.kind == tokEq:
		o = opEq
	case t.kind == tokNe:
		o = opNe
	case t.kind == tokIdent && t.text == "in":
		o = opIn
	case t.kind == tokIdent && t.text == "contains":
		o = opContains
	case t.kind == tokIdent && t.text == "not":
		o = opNotIn
	case t.kind == tokIdent && t.text == "starts":
		o = opStartsWith
	case t.kind == tokIdent && t.text == "ends":
		o = opEndsWith
	default:
		return nil, p.expected("an operator (==, !=, in, not in, contains, starts with, ends with)")
	}
	p.advance()
	switch o {
	case opNotIn:
		if err := p.keyword("in"); err != nil {
			return nil, err
		}
	case opStartsWith, opEndsWith:
		if err := p.keyword("with"); err != nil {
			return nil, err
		}
	}
	if o == opIn || o == opNotIn {
		set, err := p.parseSet()
		if err != nil {
			return nil, err
		}
		return newSet(o, key.text, set), nil
	}
	v := p.peek()
	if v.kind != tokString {
		return nil, p.expected("a quoted string")
	}
	p.advance()
	return newLeaf(o, key.text, v.text), nil
}

// keyword consumes the identifier word or reports that it is missing.
func (p *parser) keyword(word string) *ParseError {
	if t := p.peek(); t.kind != tokIdent || t.text != word {
		return p.expected(strconv.Quote(word))
	}
	p.advance()
	return nil
}

// parseSet parses {"a", "b", ...}.
func (p *parser) parseSet() ([]string, *ParseError) {
	if p.peek().kind != tokLBrace {
		return nil, p.expected(`"{"`)
	}
	p.advance()
	set := []string{}
	if p.peek().kind == tokRBrace {
		p.advance()
		return set, nil
	}
	for {
		t := p.peek()
		if t.kind != tokString {
			if len(set) == 0 {
				return nil, p.expected(`a quoted string or "}"`)
			}
			return nil, p.expected("a quoted string")
		}
		p.advance()
		set = append(set, t.text)
		switch p.peek().kind {
		case tokComma:
			p.advance()
		case tokRBrace:
			p.advance()
			return set, nil
		default:
			return nil, p.expected(`"," or "}"`)
		}
	}
}
