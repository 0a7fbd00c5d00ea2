module github.com/iamtoken/iamtoken-go/bench

go 1.26.0

replace github.com/iamtoken/iamtoken-go => ../
