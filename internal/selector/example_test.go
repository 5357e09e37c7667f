package selector_test

import (
	"fmt"

	"github.com/tabbynet/tabby/internal/selector"
)

func ExampleParse() {
	sel, err := selector.Parse(`role=='web' && (env in {'staging','prod'} || !has(tier))`)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(sel)
	fmt.Println(sel.Evaluate(selector.Map{"role": "web", "env": "prod"}))
	fmt.Println(sel.Evaluate(selector.Map{"role": "web", "env": "dev", "tier": "1"}))
	fmt.Println(sel.LabelKeys())

	_, err = selector.Parse(`role == "web" &&`)
	fmt.Println(err)
	// Output:
	// role == "web" && (env in {"prod", "staging"} || !has(tier))
	// true
	// false
	// [env role tier]
	// selector "role == \"web\" &&": position 16: expected an expression, found end of input
}
