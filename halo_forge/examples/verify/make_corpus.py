"""Writes corpus.jsonl: the verifier benchmark's corpus (CodeForces-style programs with io tests).

Mostly C++ with <bits/stdc++.h> (as CodeForces code is), some C, Rust and Python, a few wrong
or broken programs so every path runs. Each program is distinct, so without the repeats that
`halo-forge bench verify --repeat` adds, the verdict cache has nothing to hit.
Run: python examples/verify/make_corpus.py
"""

from __future__ import annotations

import json
from pathlib import Path

STDCPP = "#include <bits/stdc++.h>\nusing namespace std;\n"

# (name, language, code, [(stdin, stdout), ...])
PROGRAMS: list[tuple[str, str, str, list[tuple[str, str]]]] = []


def add(name, language, code, tests):
    PROGRAMS.append((name, language, code, tests))


ab = [("1 2\n", "3\n"), ("-5 5\n", "0\n"), ("1000000 1000000\n", "2000000\n")]
arr = [("5\n3 1 4 1 5\n", None), ("3\n9 8 7\n", None), ("1\n42\n", None)]


def arr_tests(fn):
    return [(i, fn(list(map(int, i.split()[1:])))) for i, _ in arr]


add("cpp_sum", "cpp", STDCPP + "int main(){long long a,b;cin>>a>>b;cout<<a+b<<\"\\n\";}\n", ab)
add("cpp_sort", "cpp", STDCPP + "int main(){int n;cin>>n;vector<int>v(n);for(auto&x:v)cin>>x;sort(v.begin(),v.end());"
    "for(int i=0;i<n;i++)cout<<v[i]<<(i+1<n?' ':'\\n');}\n", arr_tests(lambda a: " ".join(map(str, sorted(a))) + "\n"))
add("cpp_max", "cpp", STDCPP + "int main(){int n;cin>>n;vector<long long>v(n);for(auto&x:v)cin>>x;"
    "cout<<*max_element(v.begin(),v.end())<<endl;}\n", arr_tests(lambda a: f"{max(a)}\n"))
add("cpp_prefix", "cpp", STDCPP + "int main(){int n;cin>>n;long long s=0;vector<long long>p;for(int i=0;i<n;i++)"
    "{long long x;cin>>x;s+=x;p.push_back(s);}for(size_t i=0;i<p.size();i++)cout<<p[i]<<(i+1<p.size()?\" \":\"\\n\");}\n",
    arr_tests(lambda a: " ".join(str(sum(a[:i + 1])) for i in range(len(a))) + "\n"))
add("cpp_set", "cpp", STDCPP + "int main(){int n;cin>>n;set<int>s;for(int i=0;i<n;i++){int x;cin>>x;s.insert(x);}"
    "cout<<s.size()<<'\\n';}\n", arr_tests(lambda a: f"{len(set(a))}\n"))
add("cpp_map", "cpp", STDCPP + "int main(){int n;cin>>n;map<int,int>c;int best=0,val=0;for(int i=0;i<n;i++){int x;cin>>x;"
    "if(++c[x]>best||(c[x]==best&&x<val)){best=c[x];val=x;}}cout<<val<<'\\n';}\n",
    arr_tests(lambda a: f"{min(set(a), key=lambda v: (-a.count(v), v))}\n"))
add("cpp_gcd", "cpp", STDCPP + "int main(){long long a,b;cin>>a>>b;cout<<__gcd(a,b)<<'\\n';}\n",
    [("12 18\n", "6\n"), ("7 13\n", "1\n"), ("100 75\n", "25\n")])
add("cpp_sieve", "cpp", STDCPP + "int main(){int n;cin>>n;vector<bool>p(n+1,true);int c=0;for(int i=2;i<=n;i++)"
    "if(p[i]){c++;for(long long j=1LL*i*i;j<=n;j+=i)p[j]=false;}cout<<c<<'\\n';}\n",
    [("10\n", "4\n"), ("100\n", "25\n"), ("1000000\n", "78498\n")])
add("cpp_string", "cpp", STDCPP + "int main(){string s;cin>>s;reverse(s.begin(),s.end());cout<<s<<'\\n';}\n",
    [("abc\n", "cba\n"), ("x\n", "x\n"), ("racecar\n", "racecar\n")])
add("cpp_dp", "cpp", STDCPP + "int main(){int n;cin>>n;vector<long long>f(n+2);f[0]=0;f[1]=1;for(int i=2;i<=n;i++)"
    "f[i]=(f[i-1]+f[i-2])%1000000007;cout<<f[n]<<'\\n';}\n", [("10\n", "55\n"), ("1\n", "1\n"), ("50\n", "586268941\n")])
add("cpp_bfs", "cpp", STDCPP + "int main(){int n,m;cin>>n>>m;vector<vector<int>>g(n+1);for(int i=0;i<m;i++){int a,b;cin>>a>>b;"
    "g[a].push_back(b);g[b].push_back(a);}vector<int>d(n+1,-1);queue<int>q;q.push(1);d[1]=0;while(!q.empty()){int u=q.front();"
    "q.pop();for(int v:g[u])if(d[v]<0){d[v]=d[u]+1;q.push(v);}}cout<<d[n]<<'\\n';}\n",
    [("4 4\n1 2\n2 3\n3 4\n1 3\n", "2\n"), ("2 1\n1 2\n", "1\n"), ("3 1\n1 2\n", "-1\n")])
add("cpp_binsearch", "cpp", STDCPP + "int main(){long long n;cin>>n;long long lo=0,hi=2000000000;while(lo<hi){long long m=(lo+hi+1)/2;"
    "if(m*m<=n)lo=m;else hi=m-1;}cout<<lo<<'\\n';}\n", [("16\n", "4\n"), ("17\n", "4\n"), ("1000000000000\n", "1000000\n")])
add("cpp_wrong", "cpp", STDCPP + "int main(){long long a,b;cin>>a>>b;cout<<a-b<<\"\\n\";}\n", ab)
add("cpp_compile_error", "cpp", STDCPP + "int main(){cout<<undefined_name<<endl;}\n", ab)
add("cpp_iostream", "cpp", "#include <iostream>\n#include <vector>\n#include <algorithm>\nint main(){int n;std::cin>>n;"
    "std::vector<int>v(n);for(auto&x:v)std::cin>>x;std::cout<<std::count_if(v.begin(),v.end(),[](int x){return x%2;})<<'\\n';}\n",
    arr_tests(lambda a: f"{sum(x % 2 for x in a)}\n"))
add("cpp_runtime_error", "cpp", "#include <cstdio>\nint main(){int*p=nullptr;volatile int z=0;printf(\"%d\\n\",*p+z);}\n",
    [("\n", "0\n")])

add("c_sum", "c", "#include <stdio.h>\nint main(void){long long a,b;scanf(\"%lld %lld\",&a,&b);printf(\"%lld\\n\",a+b);return 0;}\n", ab)
add("c_max", "c", "#include <stdio.h>\nint main(void){int n;scanf(\"%d\",&n);long long m=-1e18,x;for(int i=0;i<n;i++){scanf(\"%lld\",&x);"
    "if(x>m)m=x;}printf(\"%lld\\n\",m);return 0;}\n", arr_tests(lambda a: f"{max(a)}\n"))
add("c_sqrt", "c", "#include <stdio.h>\n#include <math.h>\nint main(void){double x;scanf(\"%lf\",&x);printf(\"%.6f\\n\",sqrt(x));return 0;}\n",
    [("4\n", "2.000000\n"), ("2\n", "1.414214\n"), ("0\n", "0.000000\n")])
add("c_rev", "c", "#include <stdio.h>\n#include <string.h>\nint main(void){char s[128];scanf(\"%127s\",s);for(int i=(int)strlen(s)-1;i>=0;i--)"
    "putchar(s[i]);putchar('\\n');return 0;}\n", [("abc\n", "cba\n"), ("x\n", "x\n"), ("hello\n", "olleh\n")])
add("c_warning", "c", "#include <stdio.h>\nint main(void){int unused;long long a,b;scanf(\"%lld %lld\",&a,&b);printf(\"%lld\\n\",a+b);return 0;}\n", ab)

add("rust_sum", "rust", "use std::io::*;\nfn main(){let mut s=String::new();stdin().read_to_string(&mut s).unwrap();"
    "let v:Vec<i64>=s.split_whitespace().map(|x|x.parse().unwrap()).collect();println!(\"{}\",v[0]+v[1]);}\n", ab)
add("rust_sort", "rust", "use std::io::*;\nfn main(){let mut s=String::new();stdin().read_to_string(&mut s).unwrap();"
    "let mut v:Vec<i64>=s.split_whitespace().skip(1).map(|x|x.parse().unwrap()).collect();v.sort();"
    "let o:Vec<String>=v.iter().map(|x|x.to_string()).collect();println!(\"{}\",o.join(\" \"));}\n",
    arr_tests(lambda a: " ".join(map(str, sorted(a))) + "\n"))

add("py_sum", "python", "a, b = map(int, input().split())\nprint(a + b)\n", ab)
add("py_sort", "python", "n = int(input())\nprint(*sorted(map(int, input().split())))\n",
    arr_tests(lambda a: " ".join(map(str, sorted(a))) + "\n"))
add("py_count", "python", "input()\nprint(len(set(input().split())))\n", arr_tests(lambda a: f"{len(set(a))}\n"))
add("py_wrong", "python", "input()\nprint(0)\n", arr_tests(lambda a: f"{len(set(a))}\n"))


def main() -> None:
    out = Path(__file__).with_name("corpus.jsonl")
    with out.open("w") as f:
        for name, language, code, tests in PROGRAMS:
            io_tests = [{"stdin": i, "stdout": o} for i, o in tests]
            f.write(json.dumps({"id": name, "language": language, "code": code, "io_tests": io_tests}) + "\n")
    print(f"wrote {len(PROGRAMS)} samples to {out}")


if __name__ == "__main__":
    main()
