using Mono.Cecil;
using Mono.Cecil.Cil;

namespace ParameterServer.Tests;

/// <summary>One arrow between two types: <paramref name="From"/> (a type defined in the module read, nested and
/// compiler-generated types included) uses <paramref name="To"/> (any type, in any assembly); <paramref name="Via"/>
/// says how (base type, field, call, ...).</summary>
internal sealed record TypeDependency(TypeDefinition From, TypeReference To, string Via);

/// <summary>Reads every type dependency of a compiled module with Mono.Cecil: base types, interfaces, generic
/// arguments and constraints, fields, properties, events, method signatures, custom attributes (and the types in
/// their arguments), local variables, catch clauses and every type, method and field an IL instruction names.
/// Nothing is resolved, so no referenced assembly needs to be found.</summary>
internal static class TypeDependencies
{
    public static IEnumerable<TypeDependency> Of(ModuleDefinition module)
    {
        var found = new List<TypeDependency>();
        foreach (var type in module.GetTypes())
        {
            var sink = new Sink(type, found);
            sink.Attributes(type.CustomAttributes);
            sink.Type(type.BaseType, "base type");
            foreach (var impl in type.Interfaces)
            {
                sink.Type(impl.InterfaceType, "interface");
                sink.Attributes(impl.CustomAttributes);
            }
            sink.GenericParameters(type.GenericParameters);
            foreach (var field in type.Fields)
            {
                sink.Type(field.FieldType, "field");
                sink.Attributes(field.CustomAttributes);
            }
            foreach (var property in type.Properties)
            {
                sink.Type(property.PropertyType, "property");
                foreach (var p in property.Parameters)
                {
                    sink.Type(p.ParameterType, "property");
                }
                sink.Attributes(property.CustomAttributes);
            }
            foreach (var ev in type.Events)
            {
                sink.Type(ev.EventType, "event");
                sink.Attributes(ev.CustomAttributes);
            }
            foreach (var method in type.Methods)
            {
                sink.Method(method);
            }
        }
        return found;
    }

    private sealed class Sink(TypeDefinition from, List<TypeDependency> found)
    {
        public void Type(TypeReference? type, string via)
        {
            switch (type)
            {
                case null:
                case GenericParameter:
                    return;
                case GenericInstanceType generic:
                    Type(generic.ElementType, via);
                    foreach (var argument in generic.GenericArguments)
                    {
                        Type(argument, via);
                    }
                    return;
                case FunctionPointerType pointer:
                    Type(pointer.ReturnType, via);
                    foreach (var p in pointer.Parameters)
                    {
                        Type(p.ParameterType, via);
                    }
                    return;
                case IModifierType modified:
                    Type(modified.ModifierType, via);
                    Type(modified.ElementType, via);
                    return;
                case TypeSpecification specification: // arrays, pointers, by-refs, pinned
                    Type(specification.ElementType, via);
                    return;
                default:
                    found.Add(new TypeDependency(from, type, via));
                    return;
            }
        }

        public void Attributes(IEnumerable<CustomAttribute> attributes)
        {
            foreach (var attribute in attributes)
            {
                Type(attribute.AttributeType, "attribute");
                foreach (var argument in attribute.ConstructorArguments)
                {
                    Argument(argument);
                }
                foreach (var named in attribute.Fields.Concat(attribute.Properties))
                {
                    Argument(named.Argument);
                }
            }
        }

        private void Argument(CustomAttributeArgument argument)
        {
            Type(argument.Type, "attribute");
            switch (argument.Value)
            {
                case TypeReference type: // typeof(X) in an attribute
                    Type(type, "attribute");
                    break;
                case CustomAttributeArgument boxed:
                    Argument(boxed);
                    break;
                case CustomAttributeArgument[] array:
                    foreach (var element in array)
                    {
                        Argument(element);
                    }
                    break;
                default:
                    break;
            }
        }

        public void GenericParameters(IEnumerable<GenericParameter> parameters)
        {
            foreach (var parameter in parameters)
            {
                foreach (var constraint in parameter.Constraints)
                {
                    Type(constraint.ConstraintType, "generic constraint");
                    Attributes(constraint.CustomAttributes);
                }
                Attributes(parameter.CustomAttributes);
            }
        }

        public void Method(MethodDefinition method)
        {
            Attributes(method.CustomAttributes);
            Type(method.ReturnType, "signature");
            Attributes(method.MethodReturnType.CustomAttributes);
            foreach (var p in method.Parameters)
            {
                Type(p.ParameterType, "signature");
                Attributes(p.CustomAttributes);
            }
            GenericParameters(method.GenericParameters);
            foreach (var overridden in method.Overrides)
            {
                MethodReference(overridden, "override");
            }
            if (!method.HasBody)
            {
                return;
            }
            foreach (var local in method.Body.Variables)
            {
                Type(local.VariableType, "local");
            }
            foreach (var handler in method.Body.ExceptionHandlers)
            {
                Type(handler.CatchType, "catch");
            }
            foreach (var instruction in method.Body.Instructions)
            {
                switch (instruction.Operand)
                {
                    case TypeReference type: // newarr, castclass, isinst, box, ldtoken, sizeof, initobj, ...
                        Type(type, "type use");
                        break;
                    case MethodReference called: // call, callvirt, newobj, ldftn, ldtoken
                        MethodReference(called, instruction.OpCode == OpCodes.Newobj ? "new" : "call");
                        break;
                    case FieldReference field:
                        Type(field.DeclaringType, "field access");
                        Type(field.FieldType, "field access");
                        break;
                    case CallSite site: // calli
                        Type(site.ReturnType, "call");
                        foreach (var p in site.Parameters)
                        {
                            Type(p.ParameterType, "call");
                        }
                        break;
                    default:
                        break;
                }
            }
        }

        private void MethodReference(MethodReference method, string via)
        {
            Type(method.DeclaringType, via);
            Type(method.ReturnType, via);
            foreach (var p in method.Parameters)
            {
                Type(p.ParameterType, via);
            }
            if (method is GenericInstanceMethod generic)
            {
                foreach (var argument in generic.GenericArguments)
                {
                    Type(argument, via);
                }
            }
        }
    }

    /// <summary>The outermost declaring type: a nested or compiler-generated type counts as the type that holds it.</summary>
    public static TypeReference TopLevel(TypeReference type)
    {
        while (type.DeclaringType is not null)
        {
            type = type.DeclaringType;
        }
        return type;
    }

    /// <summary>The name of the assembly that defines <paramref name="type"/>, without resolving anything.</summary>
    public static string? AssemblyName(TypeReference type) => TopLevel(type).Scope switch
    {
        ModuleDefinition module => module.Assembly.Name.Name,
        AssemblyNameReference reference => reference.Name,
        _ => null,
    };
}
